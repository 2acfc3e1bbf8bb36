"""Pretraining objectives: a head on the backbone's features and the loss it gives on a labelled mini-batch.

An objective is an ``nn.Module`` built as ``factory(feature_dim, n_classes)`` whose ``forward(features, labels)``
returns ``(loss, logits)``. ``register_objective`` adds one (e.g. an auxiliary multi-task loss); configs name it
with ``objective: <name>``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.errors import FewzeroError

OBJECTIVES: dict[str, Callable[[int, int], nn.Module]] = {}


def register_objective(name: str):
    """Decorator: ``@register_objective("name")`` on a factory ``(feature_dim, n_classes) -> nn.Module``."""
    def add(factory):
        OBJECTIVES[name] = factory
        return factory
    return add


def create_objective(name: str, feature_dim: int, n_classes: int) -> nn.Module:
    if name not in OBJECTIVES:
        raise FewzeroError(f"unknown pretraining objective {name!r}: choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name](feature_dim, n_classes)


@register_objective("linear")
class LinearCrossEntropy(nn.Module):
    """Cross-entropy of a linear classifier over all base classes (the standard supervised pretraining)."""

    def __init__(self, feature_dim: int, n_classes: int):
        super().__init__()
        self.classifier = nn.Linear(feature_dim, n_classes)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.classifier(features)
        return F.cross_entropy(logits, labels), logits


@register_objective("cosine")
class CosineCrossEntropy(nn.Module):
    """Cross-entropy of a cosine classifier (``scale * cos``), as Baseline++ pretrains (Chen et al. 2019)."""

    def __init__(self, feature_dim: int, n_classes: int, scale: float = 10.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, feature_dim) / feature_dim ** 0.5)
        self.scale = scale

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.scale * F.normalize(features, dim=1) @ F.normalize(self.weight, dim=1).T
        return F.cross_entropy(logits, labels), logits
