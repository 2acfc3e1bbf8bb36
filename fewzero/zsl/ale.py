"""ALE: attribute label embedding (Akata, Perronnin, Harchaoui & Schmid, CVPR 2013 / TPAMI 2016)."""
from __future__ import annotations

import torch

from fewzero.registry import ZERO_SHOT
from fewzero.zsl.bilinear import BilinearLearner, margins


@ZERO_SHOT.register("ale")
class ALE(BilinearLearner):
    """Bilinear compatibility trained with the weighted approximate-ranking (WARP) loss.

    For an item whose true class is outranked (within the margin) by r classes, the hinge terms of those classes
    are summed and weighted by ``(1 + 1/2 + ... + 1/r) / r``, which puts weight on pushing the true class to the
    top of the ranking. The rank is computed exactly over all training classes rather than sampled.
    Training options: see ``BilinearLearner``.
    """

    margin = 1.0

    def loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        hinge = margins(scores, y, self.margin)
        rank = (hinge > 0).sum(1)
        harmonic = torch.cumsum(1.0 / torch.arange(1, scores.shape[1] + 1, device=scores.device), 0)
        weight = torch.where(rank > 0, harmonic[(rank - 1).clamp(min=0)] / rank.clamp(min=1), 0.0)
        return (weight * hinge.sum(1)).mean()
