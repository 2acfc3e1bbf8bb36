"""A small ResNet for training from scratch on small images (CPU-friendly), with global average pooling."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.backbones.layout import channels_last
from fewzero.registry import BACKBONES


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a shortcut (1x1 conv where the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity() if stride == 1 and in_channels == out_channels else nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x), inplace=True)


@BACKBONES.register("resnet_small")
class ResNetSmall(nn.Module):
    """Stem (3x3 conv, stride 2) and one basic block per stage, widths ``widths`` with stride 2 between stages,
    then global average pooling: (B, C, H, W) -> (B, widths[-1]).

    With the default widths a 64x64 image costs about 0.17 GFLOPs; the output is 256-dimensional.
    """

    def __init__(self, *, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        blocks, prev = [], widths[0]
        for i, width in enumerate(widths):
            blocks.append(BasicBlock(prev, width, stride=1 if i == 0 else 2))
            prev = width
        self.blocks = nn.Sequential(*blocks)
        self.out_features = prev
        self.to(memory_format=torch.channels_last)

    def named_blocks(self) -> list[tuple[str, nn.Module]]:
        """The stem, then one block per stage, input side first, as ``fewzero.transfer`` freezes and groups them."""
        return [("stem", self.stem), *((f"block{i + 1}", block) for i, block in enumerate(self.blocks))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(channels_last(x)))
        return x.mean((2, 3))
