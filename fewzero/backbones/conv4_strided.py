"""Conv-4 with strided convolutions: the Omniglot network of Finn et al. 2017 (MAML).

Each block is conv3x3 with stride 2 -> batch norm -> ReLU (no max-pooling); the last feature map is averaged over
space. On 28x28 images the maps are 14, 7, 4 and 2 pixels wide, so a forward pass costs about a quarter of
``conv4``'s (whose convolutions run at full resolution before pooling): what lets second-order MAML train on a CPU.
"""
from __future__ import annotations

import torch
from torch import nn

from fewzero.backbones.layout import channels_last
from fewzero.registry import BACKBONES


def strided_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """conv3x3 stride 2 -> batch norm -> ReLU: (B, C_in, H, W) -> (B, C_out, ceil(H / 2), ceil(W / 2))."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


@BACKBONES.register("conv4_strided")
class Conv4Strided(nn.Module):
    """Four strided conv blocks of ``hidden`` channels, averaged over space: (B, C, H, W) -> (B, hidden)."""

    def __init__(self, *, in_channels: int = 1, hidden: int = 64):
        super().__init__()
        self.blocks = nn.Sequential(
            strided_block(in_channels, hidden), strided_block(hidden, hidden),
            strided_block(hidden, hidden), strided_block(hidden, hidden),
        )
        self.to(memory_format=torch.channels_last)

    def named_blocks(self) -> list[tuple[str, nn.Module]]:
        """The four strided blocks, input side first, as ``fewzero.transfer`` freezes and groups them."""
        return [(f"block{i + 1}", block) for i, block in enumerate(self.blocks)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(channels_last(x)).mean(dim=(2, 3))
