"""DeViSE: deep visual-semantic embedding (Frome et al., NeurIPS 2013), on fixed features."""
from __future__ import annotations

import torch

from fewzero.registry import ZERO_SHOT
from fewzero.zsl.bilinear import BilinearLearner, margins


@ZERO_SHOT.register("devise")
class DeViSE(BilinearLearner):
    """A linear map of features into semantic space trained with the hinge rank loss
    ``sum_{c != y} max(0, margin - s_y^T M x + s_c^T M x)`` (every violating class counts equally).

    Args:
        margin: the hinge margin (0.1 in the paper, with unit-norm semantics).
        Other options: see ``BilinearLearner``.
    """

    def __init__(self, *, margin: float = 0.1, epochs: int = 30, batch_size: int = 64, lr: float = 1e-3,
                 weight_decay: float = 0.0, optimizer: str = "adam", seed: int = 0,
                 normalize_semantics: bool = True):
        super().__init__(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         optimizer=optimizer, seed=seed, normalize_semantics=normalize_semantics)
        self.margin = margin

    def loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return margins(scores, y, self.margin).sum(1).mean()
