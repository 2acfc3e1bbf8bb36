"""Baseline and Baseline++ (Chen et al., A Closer Look at Few-shot Classification, ICLR 2019): a classifier fitted
on the support set over the frozen features of a pretrained backbone (``fewzero pretrain``)."""
from __future__ import annotations

import torch
from torch import nn

from fewzero.errors import FewzeroError
from fewzero.learners.base import EmbeddingLearner, check_support_labels
from fewzero.registry import LEARNERS
from fewzero.transfer.heads import ClassifierHead, check_optimisation, fit_head


@LEARNERS.register("baseline")
class Baseline(EmbeddingLearner):
    """A linear classifier (``cosine=False``) or a cosine classifier trained on the support features.

    Args:
        backbone: the pretrained feature extractor, (B, *item_shape) -> (B, D); never changed by ``fit``.
        steps, lr, weight_decay: full-batch SGD (momentum 0.9) on the support cross-entropy.
        cosine: Baseline++ (scaled cosine similarity to each class's weight vector).
        scale: temperature of the cosine logits.
    """

    starts_from_pretrained = True
    cosine_head = False

    def __init__(self, backbone: nn.Module, *, steps: int = 100, lr: float = 0.1, weight_decay: float = 1e-3,
                 scale: float = 10.0):
        super().__init__()
        check_optimisation(steps=steps, lr=lr, weight_decay=weight_decay)
        self.backbone = backbone
        self.steps, self.lr, self.weight_decay, self.scale = steps, lr, weight_decay, scale
        self.head_: ClassifierHead | None = None

    def fit_embeddings(self, support_z: torch.Tensor, support_y: torch.Tensor) -> "Baseline":
        n_way = check_support_labels(support_y)
        head = ClassifierHead(support_z.detach(), support_y, n_way, cosine=self.cosine_head,
                              scale=self.scale)
        self.head_ = fit_head(head, support_z, support_y, steps=self.steps, lr=self.lr,
                              weight_decay=self.weight_decay)
        return self

    def score_embeddings(self, query_z: torch.Tensor) -> torch.Tensor:
        if self.head_ is None:
            raise FewzeroError("call fit(support_x, support_y) before scoring queries")
        return self.head_(query_z)


@LEARNERS.register("baselinepp")
class BaselinePlusPlus(Baseline):
    """Baseline++: the classifier is ``scale * cos(z, w_c)`` (its weights start at the normalised class means)."""

    cosine_head = True
