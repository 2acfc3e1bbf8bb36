"""Shared training loop of the bilinear compatibility learners (ALE, DeViSE, SJE)."""
from __future__ import annotations

import abc

import torch

from fewzero.errors import FewzeroError
from fewzero.zsl.base import ZeroShotLearner

OPTIMIZERS = ("adam", "sgd")


class BilinearLearner(ZeroShotLearner):
    """Compatibility ``F(x, s) = x^T W s`` with W (d, a) trained by minibatch SGD or Adam on a ranking loss.

    Subclasses define ``loss(scores, y)`` on a batch's (B, C) training-class scores. Seeded: the same seed gives
    the same initialisation, batch order and W.

    Args:
        epochs: passes over the training items.
        batch_size: items per step.
        lr: learning rate.
        weight_decay: L2 penalty on W.
        optimizer: ``"adam"`` or ``"sgd"`` (plain SGD, as in the papers).
        seed: seeds the initialisation and the batch order.
        normalize_semantics: see ``ZeroShotLearner``.
    """

    def __init__(self, *, epochs: int = 30, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: str = "adam", seed: int = 0, normalize_semantics: bool = True):
        super().__init__(normalize_semantics=normalize_semantics)
        if optimizer not in OPTIMIZERS:
            raise FewzeroError(f"unknown optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.weight_decay, self.optimizer, self.seed = weight_decay, optimizer, seed
        self.register_buffer("W_", None)

    @abc.abstractmethod
    def loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scalar loss of a batch: (B, C) compatibility scores, (B,) true classes."""

    def _fit(self, x: torch.Tensor, y: torch.Tensor, semantics: torch.Tensor) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        weight = 1e-3 * torch.randn(x.shape[1], semantics.shape[1], generator=generator)
        weight = weight.to(x.device).requires_grad_(True)
        if self.optimizer == "adam":
            optimizer = torch.optim.Adam([weight], lr=self.lr, weight_decay=self.weight_decay)
        else:
            optimizer = torch.optim.SGD([weight], lr=self.lr, weight_decay=self.weight_decay)
        with torch.enable_grad():
            for _ in range(self.epochs):
                order = torch.randperm(x.shape[0], generator=generator).to(x.device)
                for start in range(0, x.shape[0], self.batch_size):
                    batch = order[start:start + self.batch_size]
                    optimizer.zero_grad()
                    self.loss(x[batch] @ weight @ semantics.T, y[batch]).backward()
                    optimizer.step()
        self.W_ = weight.detach()

    def _score(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        return x @ self.W_ @ semantics.T


def margins(scores: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    """(B, C) hinge terms ``max(0, margin + F(x, c) - F(x, y))``, zero at the true class."""
    true = scores.gather(1, y[:, None])
    hinge = (margin + scores - true).clamp(min=0)
    return hinge.scatter(1, y[:, None], 0.0)
