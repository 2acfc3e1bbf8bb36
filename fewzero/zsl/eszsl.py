"""ESZSL: embarrassingly simple zero-shot learning (Romera-Paredes & Torr, ICML 2015)."""
from __future__ import annotations

import torch

from fewzero.registry import ZERO_SHOT
from fewzero.zsl.base import ZeroShotLearner


@ZERO_SHOT.register("eszsl")
class ESZSL(ZeroShotLearner):
    """Bilinear compatibility ``x^T V s`` with V in closed form.

    With X (n, d) features, Y (n, C) in {-1, +1} (+1 at the item's class) and S (C, a) the training classes'
    semantics, the regularised squared loss has the solution (the paper's Eq. 4, in row-major notation)
    ``V = (X^T X + gamma I)^-1 X^T Y S (S^T S + lam I)^-1``, of shape (d, a). Solved in float64.

    Args:
        gamma: ridge on the feature side (the paper's gamma).
        lam: ridge on the semantic side (the paper's lambda).
        center_features: subtract the training items' mean feature first (``mean_``). The -1 entries of Y
            otherwise add a rank-one term, (mean feature) x (sum of class semantics), that biases every score
            by how typical a class is; with non-negative (ReLU) features this costs much accuracy (on a CUB-like
            synthetic problem, T1 rose from about 20 % to 56 %). False gives the paper's formula on raw features.
        normalize_semantics: see ``ZeroShotLearner``.
    """

    def __init__(self, *, gamma: float = 1.0, lam: float = 0.1, center_features: bool = True,
                 normalize_semantics: bool = True):
        super().__init__(normalize_semantics=normalize_semantics)
        self.gamma, self.lam, self.center_features = gamma, lam, center_features
        self.register_buffer("V_", None)
        self.register_buffer("mean_", None)

    def _fit(self, x: torch.Tensor, y: torch.Tensor, semantics: torch.Tensor) -> None:
        self.mean_ = x.mean(0) if self.center_features else torch.zeros_like(x[0])
        x, s = (x - self.mean_).double(), semantics.double()
        targets = -torch.ones(x.shape[0], s.shape[0], dtype=torch.float64, device=x.device)
        targets[torch.arange(x.shape[0]), y] = 1.0
        left = x.T @ x + self.gamma * torch.eye(x.shape[1], dtype=torch.float64, device=x.device)
        right = s.T @ s + self.lam * torch.eye(s.shape[1], dtype=torch.float64, device=x.device)
        middle = torch.linalg.solve(left, x.T @ targets @ s)  # (d, a)
        self.V_ = torch.linalg.solve(right, middle.T).T.float()  # right is symmetric

    def _score(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        return (x - self.mean_) @ self.V_ @ semantics.T
