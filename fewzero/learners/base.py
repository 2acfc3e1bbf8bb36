"""The learner contract every few-shot method follows."""
from __future__ import annotations

import abc

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.episode import Episode, is_integer_tensor
from fewzero.errors import FewzeroError


class Learner(nn.Module, metaclass=abc.ABCMeta):
    """Base class: ``fit(support_x, support_y)`` adapts to the episode's classes and returns ``self``;
    ``forward(query_x)`` returns ``(n_query, n_way)`` logits.

    Support labels are episode-local: integers ``0..n_way-1``, each present at least once.
    """

    @abc.abstractmethod
    def fit(self, support_x: torch.Tensor, support_y: torch.Tensor) -> "Learner":
        """Adapt to a support set: (n_support, *item_shape), (n_support,) -> self."""

    @abc.abstractmethod
    def forward(self, query_x: torch.Tensor) -> torch.Tensor:
        """Score queries against the fitted classes: (n_query, *item_shape) -> (n_query, n_way) logits."""

    def episode_loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """Meta-training objective of one episode: (cross-entropy of the query set, query logits)."""
        logits = self.fit(episode.support_x, episode.support_y)(episode.query_x)
        return F.cross_entropy(logits, episode.query_y), logits


class EmbeddingLearner(Learner):
    """A learner made of a ``backbone`` that embeds every item on its own and a head fitted on the embeddings.

    Subclasses implement ``fit_embeddings`` and ``score_embeddings``. Because ``fit`` never changes the backbone,
    the evaluator may embed each distinct test item once and reuse the embedding across episodes.
    """

    backbone: nn.Module

    @abc.abstractmethod
    def fit_embeddings(self, support_z: torch.Tensor, support_y: torch.Tensor) -> "EmbeddingLearner":
        """Fit the head: (n_support, D), (n_support,) -> self."""

    @abc.abstractmethod
    def score_embeddings(self, query_z: torch.Tensor) -> torch.Tensor:
        """(n_query, D) -> (n_query, n_way) logits."""

    def fit(self, support_x: torch.Tensor, support_y: torch.Tensor) -> "EmbeddingLearner":
        check_support_labels(support_y, support_x)
        return self.fit_embeddings(self.backbone(support_x), support_y)

    def forward(self, query_x: torch.Tensor) -> torch.Tensor:
        return self.score_embeddings(self.backbone(query_x))

    def episode_loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        # One backbone pass over support and query together (batch-norm statistics over the whole episode).
        z = self.backbone(torch.cat([episode.support_x, episode.query_x]))
        n_support = episode.support_y.numel()
        logits = self.fit_embeddings(z[:n_support], episode.support_y).score_embeddings(z[n_support:])
        return F.cross_entropy(logits, episode.query_y), logits


def check_support_labels(support_y: torch.Tensor, support_x: torch.Tensor | None = None) -> int:
    """Validate episode-local support labels (and, given ``support_x``, one label per item); return ``n_way``.

    Labels must be a non-empty 1-D integer tensor holding ``0..n_way-1``, every class at least once.
    """
    if not isinstance(support_y, torch.Tensor):
        raise FewzeroError(f"support labels must be a torch.Tensor, got {type(support_y).__name__}")
    if support_y.ndim != 1 or support_y.numel() == 0:
        raise FewzeroError(f"support labels must be a non-empty 1-D tensor, got shape {tuple(support_y.shape)}")
    if not is_integer_tensor(support_y):
        raise FewzeroError(f"support labels must be integers (torch.long), got dtype {support_y.dtype}: "
                           f"pass y.long() with values 0..n_way-1")
    if support_x is not None:
        if not isinstance(support_x, torch.Tensor) or support_x.ndim == 0:
            raise FewzeroError("support items must be a tensor of shape (n_support, *item_shape)")
        if support_x.shape[0] != support_y.shape[0]:
            raise FewzeroError(f"the support set has {support_x.shape[0]} items but {support_y.shape[0]} labels: "
                               f"give one label per item")
    if int(support_y.min()) < 0:
        raise FewzeroError(f"support labels must be 0..n_way-1, got {int(support_y.min())}: relabel the support set "
                           "(e.g. torch.unique(y, return_inverse=True)[1])")
    n_way = int(support_y.max()) + 1
    present = torch.bincount(support_y.long(), minlength=n_way)
    if bool((present == 0).any()):
        raise FewzeroError("support labels must be 0..n_way-1 with every class present: relabel the support set "
                           "(e.g. torch.unique(y, return_inverse=True)[1])")
    return n_way
