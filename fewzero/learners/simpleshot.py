"""SimpleShot (Wang et al., 2019): nearest centroid on centred, L2-normalised features of a pretrained backbone."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.errors import FewzeroError
from fewzero.learners.base import EmbeddingLearner, check_support_labels
from fewzero.registry import LEARNERS

NORMALISATIONS = ("cl2n", "l2n", "un")


@LEARNERS.register("simpleshot")
class SimpleShot(EmbeddingLearner):
    """Transforms each feature, then classifies a query by its Euclidean distance to each class centroid.

    Args:
        backbone: the pretrained feature extractor, (B, *item_shape) -> (B, D).
        normalisation: ``"cl2n"`` (subtract the base-class mean, then L2-normalise; the paper's best),
            ``"l2n"`` (L2-normalise only) or ``"un"`` (unchanged features).

    The base-class mean ``base_mean`` (D,) is a buffer: ``fewzero pretrain`` measures it over the training images
    and ``learner_from_checkpoint`` loads it (``use_base_statistics``); it is zero until then.
    """

    starts_from_pretrained = True

    def __init__(self, backbone: nn.Module, *, normalisation: str = "cl2n"):
        super().__init__()
        if normalisation not in NORMALISATIONS:
            raise FewzeroError(f"unknown normalisation {normalisation!r}: choose one of {', '.join(NORMALISATIONS)}")
        self.backbone = backbone
        self.normalisation = normalisation
        self.register_buffer("base_mean", torch.zeros(0))
        self.centroids_: torch.Tensor | None = None

    def use_base_statistics(self, statistics: dict[str, torch.Tensor]) -> None:
        """Take the base-class feature mean (``statistics["base_mean"]``, shape (D,)) of a pretrained backbone."""
        self.base_mean = statistics["base_mean"].detach().clone().float()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "base_mean")
        if saved is not None:  # the mean's size is the saved backbone's feature size (0 = none measured)
            self.base_mean = torch.empty_like(saved)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, D): the features as the classifier sees them."""
        if self.normalisation == "cl2n" and self.base_mean.numel():
            if self.base_mean.shape[0] != z.shape[1]:
                raise FewzeroError(f"the base-class mean has {self.base_mean.shape[0]} features but the backbone gives "
                                   f"{z.shape[1]}: load the learner from its own pretrained checkpoint")
            z = z - self.base_mean.to(z.device, z.dtype)
        return z if self.normalisation == "un" else F.normalize(z, dim=1)

    def fit_embeddings(self, support_z: torch.Tensor, support_y: torch.Tensor) -> "SimpleShot":
        n_way = check_support_labels(support_y)
        z = self.transform(support_z)
        sums = z.new_zeros(n_way, z.shape[1]).index_add_(0, support_y, z)
        self.centroids_ = sums / torch.bincount(support_y, minlength=n_way).to(z.dtype).unsqueeze(1)
        return self

    def score_embeddings(self, query_z: torch.Tensor) -> torch.Tensor:
        if self.centroids_ is None:
            raise FewzeroError("call fit(support_x, support_y) before scoring queries")
        return -torch.cdist(self.transform(query_z), self.centroids_).pow(2)
