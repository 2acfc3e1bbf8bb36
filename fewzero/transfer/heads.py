"""Classifier heads fitted on features of a support set: linear (Baseline) and cosine (Baseline++).

A head starts from the class means of the support features, so its result does not depend on how the classes are
numbered (relabelling the support set permutes the rows of the head and nothing else).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.errors import FewzeroError


class ClassifierHead(nn.Module):
    """Scores features against one weight vector per class: (B, D) -> (B, n_way).

    ``cosine=False``: ``z @ W.T + b`` (a linear classifier). ``cosine=True``: ``scale * cos(z, w_c)`` (Chen et al.
    2019, Baseline++). The weights start from the class means of ``support_z`` (L2-normalised for the cosine head;
    for the linear head the means are scaled by ``init_scale``, 0 = start from zero).
    """

    def __init__(self, support_z: torch.Tensor, support_y: torch.Tensor, n_way: int, *, cosine: bool = False,
                 scale: float = 10.0, init_scale: float = 0.0):
        super().__init__()
        sums = support_z.new_zeros(n_way, support_z.shape[1]).index_add_(0, support_y, support_z)
        means = sums / torch.bincount(support_y, minlength=n_way).to(support_z.dtype).unsqueeze(1)
        self.cosine, self.scale = cosine, scale
        self.weight = nn.Parameter(F.normalize(means, dim=1) if cosine else init_scale * means)
        self.bias = None if cosine else nn.Parameter(support_z.new_zeros(n_way))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.cosine:
            return self.scale * F.normalize(z, dim=1) @ F.normalize(self.weight, dim=1).T
        return F.linear(z, self.weight, self.bias)


def check_optimisation(*, steps: int, lr: float, weight_decay: float = 0.0) -> None:
    """One-line errors for impossible head-training settings."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise FewzeroError(f"steps must be an integer >= 0, got {steps!r}")
    if not lr >= 0 or lr == float("inf"):
        raise FewzeroError(f"lr must be a finite number >= 0, got {lr!r}")
    if not weight_decay >= 0:
        raise FewzeroError(f"weight_decay must be >= 0, got {weight_decay!r}")


def fit_head(head: ClassifierHead, support_z: torch.Tensor, support_y: torch.Tensor, *, steps: int, lr: float,
             weight_decay: float = 0.0, momentum: float = 0.9) -> ClassifierHead:
    """Full-batch SGD with momentum on the cross-entropy of the support set; features are fixed (detached)."""
    z = support_z.detach()
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(head(z), support_y).backward()
            optimizer.step()
    return head.requires_grad_(False)
