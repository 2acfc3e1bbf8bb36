"""Relation Networks (Sung et al., CVPR 2018)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.backbones.conv4 import conv_block
from fewzero.episode import Episode
from fewzero.errors import FewzeroError
from fewzero.learners.base import EmbeddingLearner, check_support_labels
from fewzero.registry import LEARNERS

LOSSES = ("mse", "cross_entropy")
POOLINGS = ("sum", "mean")


@LEARNERS.register("relation")
class RelationNetwork(EmbeddingLearner):
    """Scores each (class, query) pair with a learned relation module on their concatenated feature maps.

    Args:
        backbone: maps items (B, *item_shape) to feature maps (B, C, H, W), e.g. conv4 with
            ``pooled_blocks=2, flatten=False`` (64 x 7 x 7 for 28x28 Omniglot).
        feature_channels: C of the backbone's maps.
        map_size: H = W of the backbone's maps.
        hidden: width of the relation module's first fully connected layer (8 in the paper).
        loss: ``"mse"`` (the paper: squared error of the relation scores against one-hot labels) or
            ``"cross_entropy"`` (on the scores before the sigmoid).
        pooling: class representation from its K support maps: ``"sum"`` (the paper) or ``"mean"`` (the same at
            1-shot; keeps one model's inputs at the scale it was trained on when tested with another shot).
    """

    def __init__(self, backbone: nn.Module, *, feature_channels: int = 64, map_size: int = 7, hidden: int = 8,
                 loss: str = "mse", pooling: str = "sum"):
        super().__init__()
        if loss not in LOSSES:
            raise FewzeroError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}")
        if pooling not in POOLINGS:
            raise FewzeroError(f"unknown pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")
        if feature_channels < 1 or hidden < 1 or map_size < 4:
            raise FewzeroError(f"feature_channels and hidden must be >= 1 and map_size >= 4 (two 2x2 poolings), got "
                               f"{feature_channels}, {hidden} and {map_size}")
        self.backbone = backbone
        self.feature_channels, self.map_size, self.loss, self.pooling = feature_channels, map_size, loss, pooling
        c, side = feature_channels, map_size // 4
        # the paper's relation module: 2 x (conv3x3 64, BN, ReLU, 2x2 max-pool), FC -> hidden (ReLU), FC -> 1;
        # the first convolution is kept apart (see relation_logits), the rest follows it
        self.first_conv = nn.Conv2d(2 * c, c, kernel_size=3, padding=1)
        self.rest = nn.Sequential(*list(conv_block(c, c))[1:], conv_block(c, c), nn.Flatten(),
                                  nn.Linear(c * side * side, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))
        self.to(memory_format=torch.channels_last)
        self.class_maps_: torch.Tensor | None = None

    def _check_maps(self, z: torch.Tensor, what: str) -> None:
        expected = (self.feature_channels, self.map_size, self.map_size)
        if z.ndim != 4 or tuple(z.shape[1:]) != expected:
            raise FewzeroError(f"relation networks need {what} feature maps (N, {', '.join(map(str, expected))}), "
                               f"got shape {tuple(z.shape)}: use backbone conv4 with backbone_args {{pooled_blocks: "
                               f"2, flatten: false}}, or set learner.feature_channels / learner.map_size to match")

    def fit_embeddings(self, support_z: torch.Tensor, support_y: torch.Tensor) -> "RelationNetwork":
        """Pool the support maps of each class: ``class_maps_`` is (n_way, C, H, W)."""
        n_way = check_support_labels(support_y)
        self._check_maps(support_z, "support")
        z = support_z.float()
        self.class_maps_ = z.new_zeros(n_way, *z.shape[1:]).index_add_(0, support_y, z)
        if self.pooling == "mean":
            self.class_maps_ = self.class_maps_ / torch.bincount(support_y, minlength=n_way).to(z).view(-1, 1, 1, 1)
        return self

    def relation_logits(self, query_z: torch.Tensor) -> torch.Tensor:
        """Relation scores before the sigmoid: (n_query, C, H, W) -> (n_query, n_way), fp32."""
        if self.class_maps_ is None:
            raise FewzeroError("call fit(support_x, support_y) before scoring queries")
        self._check_maps(query_z, "query")
        n_query, n_way = query_z.shape[0], self.class_maps_.shape[0]
        # The first convolution of concat(class map, query map) is linear in each half: convolve every class map
        # and every query map once, then add them for all (query, class) pairs. Exactly the paper's module, with
        # n_query + n_way convolutions instead of n_query * n_way.
        c, weight = self.feature_channels, self.first_conv.weight
        last = torch.channels_last
        classes = F.conv2d(self.class_maps_.to(query_z.dtype).contiguous(memory_format=last), weight[:, :c],
                           padding=1)
        queries = F.conv2d(query_z.contiguous(memory_format=last), weight[:, c:], self.first_conv.bias, padding=1)
        pairs = (queries.unsqueeze(1) + classes.unsqueeze(0)).flatten(0, 1)  # (n_query * n_way, C, H, W)
        return self.rest(pairs.contiguous(memory_format=last)).float().view(n_query, n_way)

    def relation_of_pairs(self, pairs: torch.Tensor) -> torch.Tensor:
        """The relation module on explicit concatenated pairs (P, 2C, H, W) -> (P,) scores before the sigmoid
        (the textbook form of ``relation_logits``; for tests)."""
        return self.rest(self.first_conv(pairs)).float().view(-1)

    def score_embeddings(self, query_z: torch.Tensor) -> torch.Tensor:
        """(n_query, C, H, W) -> (n_query, n_way) relation scores in (0, 1)."""
        return torch.sigmoid(self.relation_logits(query_z))

    def episode_loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """(the paper's MSE against one-hot query labels, or cross-entropy; relation scores (n_query, n_way))."""
        z = self.backbone(torch.cat([episode.support_x, episode.query_x]))
        n_support = episode.support_y.numel()
        logits = self.fit_embeddings(z[:n_support], episode.support_y).relation_logits(z[n_support:])
        scores = torch.sigmoid(logits)
        if self.loss == "cross_entropy":
            return F.cross_entropy(logits, episode.query_y), scores
        return F.mse_loss(scores, F.one_hot(episode.query_y, logits.shape[1]).to(scores.dtype)), scores
