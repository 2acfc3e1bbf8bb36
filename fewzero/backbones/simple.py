"""Small backbones for feature inputs and tests."""
from __future__ import annotations

import torch
from torch import nn

from fewzero.registry import BACKBONES


@BACKBONES.register("identity")
class Identity(nn.Module):
    """Flattens its input: (B, *shape) -> (B, prod(shape)). No parameters."""

    def __init__(self, *, in_channels: int | None = None):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def named_blocks(self) -> list[tuple[str, nn.Module]]:
        return []


@BACKBONES.register("mlp")
class MLP(nn.Module):
    """Two-layer perceptron on flattened inputs: (B, *shape) -> (B, out_features)."""

    def __init__(self, *, in_features: int = 784, hidden: int = 256, out_features: int = 64,
                 in_channels: int | None = None):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features))

    def named_blocks(self) -> list[tuple[str, nn.Module]]:
        """The hidden layer (with its ReLU), then the output layer."""
        return [("layer1", self.net[1:3]), ("layer2", self.net[3])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
