"""The contract every zero-shot learner follows."""
from __future__ import annotations

import abc

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.errors import FewzeroError


class ZeroShotLearner(nn.Module, metaclass=abc.ABCMeta):
    """Base class: ``fit(x, y, semantics)`` learns from seen classes; ``forward(x, semantics)`` scores any classes.

    Labels index the rows of the ``semantics`` given to ``fit``; scores index the rows of the ``semantics`` given
    to ``forward``, so unseen classes are scored from their semantic vectors alone. Inputs may be tensors or numpy
    arrays (scikit-learn style); they are validated here and handed to ``_fit`` / ``_score`` as float32 tensors.

    Args:
        normalize_semantics: L2-normalise every class's semantic vector (in ``fit`` and ``forward``), so
            attributes on any scale and text embeddings behave alike.
    """

    def __init__(self, *, normalize_semantics: bool = True):
        super().__init__()
        self.normalize_semantics = normalize_semantics
        self.n_features_in_: int | None = None
        self.semantic_dim_: int | None = None

    @abc.abstractmethod
    def _fit(self, x: torch.Tensor, y: torch.Tensor, semantics: torch.Tensor) -> None:
        """Learn from validated inputs: (n, d) features, (n,) labels in 0..C-1, (C, a) semantics."""

    @abc.abstractmethod
    def _score(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        """Validated (n, d) features and (C', a) semantics -> (n, C') scores (higher is more likely)."""

    def fit(self, x, y, semantics) -> "ZeroShotLearner":
        """Learn from seen-class items: x (n, d), y (n,) labels indexing the rows of semantics (C, a) -> self."""
        x = _as_matrix(x, "features")
        semantics = self._semantics(semantics)
        y = torch.as_tensor(y, device=x.device)
        if y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise FewzeroError(f"labels must be a 1-D integer tensor, got shape {tuple(y.shape)} and {y.dtype}")
        y = y.long()
        if x.shape[0] != y.shape[0]:
            raise FewzeroError(f"{x.shape[0]} feature rows but {y.shape[0]} labels: give one label per item")
        if y.numel() == 0:
            raise FewzeroError("no training items: fit needs at least one item per class")
        if int(y.min()) < 0 or int(y.max()) >= semantics.shape[0]:
            bad = int(y.max()) if int(y.max()) >= semantics.shape[0] else int(y.min())
            raise FewzeroError(f"label {bad} has no semantic vector: semantics has {semantics.shape[0]} rows and "
                               f"labels must index them (0..{semantics.shape[0] - 1})")
        if y.unique().numel() < 2:
            raise FewzeroError("fit needs items of at least two classes")
        self._fit(x, y, semantics.to(x.device))
        self.n_features_in_, self.semantic_dim_ = x.shape[1], semantics.shape[1]
        return self

    def forward(self, x, semantics) -> torch.Tensor:
        """Score items against classes: x (n, d), semantics (C', a) -> (n, C') scores."""
        if self.n_features_in_ is None:
            raise FewzeroError(f"{type(self).__name__} is not fitted: call fit(x, y, semantics) first")
        x = _as_matrix(x, "features")
        semantics = self._semantics(semantics)
        if x.shape[1] != self.n_features_in_:
            raise FewzeroError(f"features have {x.shape[1]} dimensions but the model was fitted on "
                               f"{self.n_features_in_}: use the same feature extractor")
        if semantics.shape[1] != self.semantic_dim_:
            raise FewzeroError(f"semantics have {semantics.shape[1]} dimensions but the model was fitted on "
                               f"{self.semantic_dim_}: use the same kind of semantics (attributes or text)")
        return self._score(x, semantics.to(x.device))

    @torch.no_grad()
    def predict(self, x, semantics) -> torch.Tensor:
        """Index of the best-scoring row of semantics for each item: (n,)."""
        return self(x, semantics).argmax(1)

    def _semantics(self, semantics) -> torch.Tensor:
        semantics = _as_matrix(semantics, "semantics")
        bad = torch.isnan(semantics).any(1)
        if bad.any():
            raise FewzeroError(f"semantics row {int(bad.nonzero()[0])} contains NaN: fix or drop that class")
        return F.normalize(semantics, dim=1) if self.normalize_semantics else semantics


def _as_matrix(value, name: str) -> torch.Tensor:
    value = torch.as_tensor(value)
    if value.ndim != 2 or 0 in value.shape:
        raise FewzeroError(f"{name} must be a non-empty 2-D matrix, got shape {tuple(value.shape)}")
    return value.float()
