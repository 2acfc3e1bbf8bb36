"""Reptile (Nichol et al., 2018): first-order meta-learning by moving the initialisation toward adapted weights."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.episode import Episode
from fewzero.learners.maml import MAML
from fewzero.registry import LEARNERS


@LEARNERS.register("reptile")
class Reptile(MAML):
    """``fit`` and ``forward`` as MAML (SGD from the learned initialisation); meta-training differs.

    ``episode_loss`` adapts on the support set without a graph (``inner_steps`` SGD steps) and returns a surrogate
    whose gradient w.r.t. the initialisation ``theta`` is ``theta - adapted_theta`` (the Reptile direction), so the
    shared trainer's optimiser moves ``theta`` toward the adapted weights: averaged over ``meta_batch`` episodes and
    scaled by Adam rather than by Reptile's outer step size. The surrogate's value is the query cross-entropy of the
    adapted network, for the progress bar. Arguments as ``MAML`` (there is no second order).
    """

    def __init__(self, backbone: nn.Module, *, n_way: int = 5, feature_dim: int = 64, inner_lr: float = 0.1,
                 inner_steps: int = 5, test_inner_steps: int | None = 50, batch_norm: str = "transductive",
                 test_inner_lr: float | None = None, test_inner_lr_by_shot: dict[int, float] | None = None):
        super().__init__(backbone, n_way=n_way, feature_dim=feature_dim, inner_lr=inner_lr, inner_steps=inner_steps,
                         test_inner_steps=test_inner_steps, first_order=True, batch_norm=batch_norm,
                         test_inner_lr=test_inner_lr, test_inner_lr_by_shot=test_inner_lr_by_shot)

    def episode_loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """(query cross-entropy whose gradient is theta - adapted_theta, query logits (n_query, n_way))."""
        adapted, stats = self.adapt(episode.support_x, episode.support_y, differentiable=False)
        with torch.no_grad():
            logits = self.logits(episode.query_x, adapted, stats)
            query_loss = F.cross_entropy(logits, episode.query_y)
        distance = 0.5 * sum(((w - a) ** 2).sum() for w, a in zip(self.meta_weights(), adapted))
        return query_loss + (distance - distance.detach()), logits
