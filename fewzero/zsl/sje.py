"""SJE: structured joint embedding (Akata, Reed, Walter, Lee & Schiele, CVPR 2015)."""
from __future__ import annotations

import torch

from fewzero.registry import ZERO_SHOT
from fewzero.zsl.bilinear import BilinearLearner, margins


@ZERO_SHOT.register("sje")
class SJE(BilinearLearner):
    """Bilinear compatibility trained with the structured SVM loss: only the most violating class counts,
    ``max(0, max_{c != y} (margin + F(x, c) - F(x, y)))``, with 0/1 label loss as the margin.
    Training options: see ``BilinearLearner``.
    """

    margin = 1.0

    def loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return margins(scores, y, self.margin).max(1).values.mean()
