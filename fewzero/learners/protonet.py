"""Prototypical Networks (Snell et al., NeurIPS 2017)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.errors import FewzeroError
from fewzero.learners.base import EmbeddingLearner, check_support_labels
from fewzero.registry import LEARNERS

DISTANCES = ("euclidean", "cosine")


@LEARNERS.register("protonet")
class ProtoNet(EmbeddingLearner):
    """Classifies a query by its distance to each class mean ("prototype") in embedding space.

    Args:
        backbone: maps items (B, *item_shape) to embeddings (B, D).
        distance: ``"euclidean"`` (logits = minus squared Euclidean distance, as in the paper) or ``"cosine"``
            (logits = ``scale`` * cosine similarity).
        scale: temperature of the cosine logits.
    """

    def __init__(self, backbone: nn.Module, *, distance: str = "euclidean", scale: float = 10.0):
        super().__init__()
        if distance not in DISTANCES:
            raise FewzeroError(f"unknown distance {distance!r}: choose one of {', '.join(DISTANCES)}")
        self.backbone = backbone
        self.distance = distance
        self.scale = scale
        self.prototypes_: torch.Tensor | None = None

    def fit_embeddings(self, support_z: torch.Tensor, support_y: torch.Tensor) -> "ProtoNet":
        """Average the support embeddings of each class: ``prototypes_`` is (n_way, D)."""
        n_way = check_support_labels(support_y)
        sums = support_z.new_zeros(n_way, support_z.shape[1]).index_add_(0, support_y, support_z)
        counts = torch.bincount(support_y, minlength=n_way).to(support_z.dtype).unsqueeze(1)
        self.prototypes_ = sums / counts
        return self

    def score_embeddings(self, query_z: torch.Tensor) -> torch.Tensor:
        if self.prototypes_ is None:
            raise FewzeroError("call fit(support_x, support_y) before scoring queries")
        if self.distance == "cosine":
            return self.scale * F.normalize(query_z, dim=1) @ F.normalize(self.prototypes_, dim=1).T
        return -torch.cdist(query_z, self.prototypes_).pow(2)
