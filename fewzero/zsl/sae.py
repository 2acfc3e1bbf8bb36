"""SAE: semantic autoencoder (Kodirov, Xiang & Gong, CVPR 2017)."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from fewzero.errors import FewzeroError
from fewzero.registry import ZERO_SHOT
from fewzero.zsl.base import ZeroShotLearner

SPACES = ("semantic", "feature")


@ZERO_SHOT.register("sae")
class SAE(ZeroShotLearner):
    """A linear encoder W (a, d) from features to semantics whose transpose decodes them back.

    Minimises ``||X - S_y W||^2 + lam ||X W^T - S_y||^2`` (X (n, d) features, S_y (n, a) the semantics of each
    item's class); setting the gradient to zero gives the Sylvester equation
    ``(S_y^T S_y) W + W (lam X^T X) = (1 + lam) S_y^T X``, solved with ``scipy.linalg.solve_sylvester``.

    Args:
        lam: weight of the encoding term against the decoding term.
        space: ``"semantic"`` scores by cosine between the encoded item ``x W^T`` and each class's semantics
            (the paper's F->S); ``"feature"`` by cosine between the item and each decoded class ``s W`` (S->F).
        normalize_semantics: see ``ZeroShotLearner``.
    """

    def __init__(self, *, lam: float = 0.2, space: str = "semantic", normalize_semantics: bool = True):
        super().__init__(normalize_semantics=normalize_semantics)
        if space not in SPACES:
            raise FewzeroError(f"unknown SAE space {space!r}: choose one of {', '.join(SPACES)}")
        self.lam, self.space = lam, space
        self.register_buffer("W_", None)

    def _fit(self, x: torch.Tensor, y: torch.Tensor, semantics: torch.Tensor) -> None:
        import scipy.linalg

        xs = x.double().cpu().numpy()
        sy = semantics[y].double().cpu().numpy()
        w = scipy.linalg.solve_sylvester(sy.T @ sy, self.lam * (xs.T @ xs), (1 + self.lam) * sy.T @ xs)
        self.W_ = torch.as_tensor(w, dtype=torch.float32, device=x.device)

    def _score(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        if self.space == "semantic":
            return F.normalize(x @ self.W_.T, dim=1) @ F.normalize(semantics, dim=1).T
        return F.normalize(x, dim=1) @ F.normalize(semantics @ self.W_, dim=1).T
