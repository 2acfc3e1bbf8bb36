"""The learners and the fixed episode of the digits transfer study (``benchmarks/transfer_digits.py``).

``Transfer(backbone, freeze=k, ...)`` computes the same function as ``FineTune(backbone, freeze=k, ...)`` but
runs the k frozen blocks once per fit instead of once per step (frozen blocks, batch norm included, are fixed
functions), and trains on mini-batches of ``batch_size`` support items per step when the support set is larger
(full batch otherwise, as ``FineTune``). Its ``fit`` is memoised: the same support set again reuses the fit.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fewzero.data.arrays import ArrayImageDataset
from fewzero.errors import FewzeroError
from fewzero.learners.base import Learner, check_support_labels
from fewzero.learners.finetune import FineTune, Network
from fewzero.sampling import EpisodeSampler
from fewzero.transfer.blocks import freeze as freeze_blocks
from fewzero.transfer.blocks import named_blocks
from fewzero.transfer.heads import ClassifierHead


class Tail(nn.Module):
    """The unfrozen blocks of a backbone (names kept), then a flatten: (B, *feature_shape) -> (B, D)."""

    def __init__(self, blocks: list[tuple[str, nn.Module]]):
        super().__init__()
        self.blocks = nn.ModuleDict(blocks)

    def named_blocks(self) -> list[tuple[str, nn.Module]]:
        return list(self.blocks.items())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x.contiguous(memory_format=torch.channels_last))
        return x.flatten(1)


class BatchedFineTune(FineTune):
    """``FineTune`` whose steps use ``batch_size`` support items each (epochs of a seeded random order) when the
    support set holds more than ``batch_size`` items; the head still starts from the means of the whole set."""

    def __init__(self, backbone: nn.Module, *, batch_size: int = 100, seed: int = 0, **settings):
        super().__init__(backbone, **settings)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise FewzeroError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.batch_size, self.seed = batch_size, seed

    def fit(self, support_x: torch.Tensor, support_y: torch.Tensor) -> "BatchedFineTune":
        if support_y.numel() <= self.batch_size:
            return super().fit(support_x, support_y)
        n_way = check_support_labels(support_y, support_x)
        backbone = freeze_blocks(copy.deepcopy(self.backbone), up_to=self.freeze)
        with torch.no_grad():
            backbone.eval()
            head = ClassifierHead(backbone(support_x), support_y, n_way, cosine=self.cosine, scale=self.scale)
        network = Network(backbone, head).train()
        optimizer = torch.optim.SGD(self._groups(network), lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.empty(0, dtype=torch.long)
        with torch.enable_grad():
            for _ in range(self.steps):
                if order.numel() < self.batch_size:
                    order = torch.cat([order, torch.randperm(support_y.numel(), generator=generator)])
                batch, order = order[:self.batch_size], order[self.batch_size:]
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(network(support_x[batch]), support_y[batch]).backward()
                optimizer.step()
        self.adapted_ = network.eval().requires_grad_(False)
        return self


def fresh_copy(backbone: nn.Module, seed: int) -> nn.Module:
    """The same architecture, randomly initialised from ``seed`` (batch-norm statistics reset too)."""
    fresh = copy.deepcopy(backbone)
    torch.manual_seed(seed)
    for module in fresh.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return fresh


class Transfer(Learner):
    """Fine-tune ``backbone`` with its first ``freeze`` blocks frozen: (N, 1, H, W) support -> (M, n_way) logits.

    Args:
        backbone: a network with blocks (``fewzero.transfer.named_blocks``); never changed.
        freeze: frozen blocks, input side first (all of them = linear probe).
        batch_size, seed: of ``BatchedFineTune`` (the mini-batch order); other settings go to ``FineTune``.
    """

    def __init__(self, backbone: nn.Module, *, freeze: int, batch_size: int = 100, seed: int = 0, **settings):
        super().__init__()
        blocks = named_blocks(backbone)
        if isinstance(freeze, bool) or not isinstance(freeze, int) or not 0 <= freeze <= len(blocks):
            raise FewzeroError(f"freeze={freeze!r}: give 0..{len(blocks)}")
        blocks = copy.deepcopy(blocks)
        self.prefix = freeze_blocks(nn.Sequential(*(b for _, b in blocks[:freeze])), up_to=freeze)
        self.inner = BatchedFineTune(Tail(blocks[freeze:]), freeze=0, batch_size=batch_size, seed=seed, **settings)
        self._support: tuple[torch.Tensor, torch.Tensor] | None = None

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen blocks' output: (N, C, H, W) -> (N, C', H', W')."""
        for block in self.prefix:
            x = block(x.contiguous(memory_format=torch.channels_last))
        return x

    def fit(self, support_x: torch.Tensor, support_y: torch.Tensor) -> "Transfer":
        last = self._support
        if last is not None and torch.equal(last[0], support_x) and torch.equal(last[1], support_y):
            return self  # the fit is deterministic: the same support set gives the same network
        self.inner.fit(self.features(support_x), support_y)
        self._support = (support_x.clone(), support_y.clone())
        return self

    def forward(self, query_x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.features(query_x))


def labelled_indices(labels: torch.Tensor, n: int, seed: int) -> np.ndarray:
    """``n`` positions per class of ``labels``, drawn with ``seed``; nested in ``n`` (the first ``n`` of one random
    order per class), grouped by class."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == c)
        if members.size < n:
            raise FewzeroError(f"class {c} has {members.size} training items, fewer than n={n}: lower n")
        picks.append(np.sort(rng.permutation(members)[:n]))
    return np.concatenate(picks)


class FixedEpisodeSampler(EpisodeSampler):
    """One episode for ``fewzero.evaluate.evaluate``: the support items and the query items of ``episode_data``."""

    def __init__(self, labels: torch.Tensor, n_support: int):
        labels = torch.as_tensor(labels)
        n_way = int(labels.max()) + 1
        support, query = labels[:n_support], labels[n_support:]
        shots, queries = torch.bincount(support, minlength=n_way), torch.bincount(query, minlength=n_way)
        if bool((shots != shots[0]).any()) or bool((queries != queries[0]).any()):
            raise FewzeroError("the fixed episode needs the same number of support and of query items per class: "
                               "balance the labelled and the evaluation subsets")
        super().__init__(labels, n_way, int(shots[0]), int(queries[0]), n_episodes=1)
        order = torch.arange(labels.numel())
        self._fixed = torch.cat([torch.cat([order[:n_support][support == c], order[n_support:][query == c]])
                                 for c in range(n_way)]).tolist()

    def episode_indices(self, index: int) -> list[int]:
        return list(self._fixed)


def episode_data(train: ArrayImageDataset, support: np.ndarray, query: ArrayImageDataset,
                 per_class: int | None = None) -> tuple[ArrayImageDataset, FixedEpisodeSampler]:
    """A dataset of ``train[support]`` then ``query`` (its first ``per_class`` items per class when given), and
    the sampler of the one episode they make."""
    keep = torch.arange(len(query))
    if per_class is not None:
        keep = torch.cat([keep[query.labels == c][:per_class] for c in range(query.num_classes)])
    support = torch.as_tensor(support, dtype=torch.long)
    if train.images is not query.images:
        raise FewzeroError("the labelled and the evaluation items must come from the same domain")
    data = ArrayImageDataset(train.images, torch.cat([train.item_image[support], query.item_image[keep]]),
                             torch.cat([train.labels[support], query.labels[keep]]), train.class_names)
    return data, FixedEpisodeSampler(data.labels, support.numel())
