"""Episodic sampling: a ``torch.utils.data.Sampler`` of N-way K-shot Q-query index lists, and their collate.

Use with a plain ``DataLoader``::

    sampler = EpisodeSampler(dataset.labels, n_way=5, n_shot=1, n_query=15, n_episodes=1000, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=sampler.collate)
    for episode in loader: ...

Episode ``i`` is drawn from a generator seeded with ``(seed, i)`` alone, so the same seed gives the same episodes
whatever learner consumes them, and training resumed at episode ``i`` sees exactly the episodes it would have seen.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from fewzero.data.arrays import ItemBatch
from fewzero.episode import Episode
from fewzero.errors import FewzeroError


class EpisodeSampler(Sampler[list[int]]):
    """Yields, per episode, ``n_way * (n_shot + n_query)`` dataset indices grouped by class.

    Args:
        labels: (n_items,) class index of every item of the split.
        n_way, n_shot, n_query: classes per episode, support and query items per class.
        n_episodes: number of episodes per pass.
        seed: episodes depend only on ``(seed, episode index)``.
        start: index of the first episode (to resume training mid-way).
        class_names: optional names for error messages.
        rank, world: yield only episodes ``i`` with ``i % world == rank`` (one worker's share of data-parallel
            training; see ``fewzero.distributed``).
    """

    def __init__(self, labels: Sequence[int] | np.ndarray | torch.Tensor, n_way: int, n_shot: int, n_query: int,
                 n_episodes: int, seed: int = 0, start: int = 0, class_names: Sequence[str] | None = None,
                 rank: int = 0, world: int = 1):
        n_way, n_shot, n_query = _count("n_way", n_way, 1), _count("n_shot", n_shot, 1), _count("n_query", n_query, 0)
        n_episodes, start = _count("n_episodes", n_episodes, 0), _count("start", start, 0)
        seed = _count("seed", seed, 0)
        rank, world = _count("rank", rank, 0), _count("world", world, 1)
        if not rank < world:
            raise FewzeroError(f"rank must be in [0, world={world}), got {rank}")
        labels = _labels(labels)
        classes, counts = np.unique(labels, return_counts=True)
        if n_way > len(classes):
            raise FewzeroError(f"n_way={n_way} is larger than the {len(classes)} classes of this split: "
                               f"use at most {len(classes)} ways")
        need = n_shot + n_query
        short = counts < need
        if short.any():
            c = int(classes[np.argmax(short)])
            name = class_names[c] if class_names is not None else f"class {c}"
            raise FewzeroError(f"{name} has {int(counts[np.argmax(short)])} items but n_shot + n_query = {need}: "
                               f"lower --shot/--query (or drop classes with fewer items)")
        order = np.argsort(labels, kind="stable")
        self.classes = classes
        self._by_class = np.split(order, np.cumsum(counts)[:-1])
        self.n_way, self.n_shot, self.n_query = int(n_way), int(n_shot), int(n_query)
        self.n_episodes, self.seed, self.start = int(n_episodes), int(seed), int(start)
        self.rank, self.world = int(rank), int(world)

    def _indices(self) -> range:
        first = self.start + (self.rank - self.start) % self.world
        return range(first, self.n_episodes, self.world)

    def __len__(self) -> int:
        return len(self._indices())

    def episode_indices(self, index: int) -> list[int]:
        """The dataset indices of episode ``index``: class by class, ``n_shot`` support then ``n_query`` query."""
        rng = np.random.default_rng((self.seed, index))
        chosen = rng.choice(len(self.classes), self.n_way, replace=False)
        need = self.n_shot + self.n_query
        picks = [self._by_class[c][rng.choice(len(self._by_class[c]), need, replace=False)] for c in chosen]
        return np.concatenate(picks).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for i in self._indices():
            yield self.episode_indices(i)

    @property
    def collate(self) -> "EpisodeCollate":
        return EpisodeCollate(self.n_way, self.n_shot, self.n_query)


def _count(name: str, value: object, low: int) -> int:
    """``value`` as an int >= ``low``; NaN, infinities, fractions, bools and non-numbers are a FewzeroError."""
    number = None
    if not isinstance(value, (bool, str, bytes)):
        try:
            number = operator.index(value)  # ints of any size exactly (Python, NumPy, 0-d integer tensors)
        except TypeError:
            try:
                number = float(value)  # type: ignore[arg-type]  # whole floats such as 5.0
            except (TypeError, ValueError, RuntimeError):
                number = None
    if number is None or not math.isfinite(number) or number != int(number) or number < low:
        raise FewzeroError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(number)


def _labels(labels: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    """Class labels as a 1-D int64 array (a FewzeroError for anything else)."""
    try:
        array = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    except (TypeError, ValueError):
        raise FewzeroError("labels must be a 1-D sequence of integer class indices") from None
    if array.ndim != 1 or not (array.size == 0 or np.issubdtype(array.dtype, np.integer)):
        raise FewzeroError(f"labels must be a 1-D sequence of integer class indices, got shape {array.shape} "
                           f"and dtype {array.dtype}")
    return array.astype(np.int64)


class EpisodeCollate:
    """Turns the items of one episode (as ordered by ``EpisodeSampler``) into an ``Episode``."""

    def __init__(self, n_way: int, n_shot: int, n_query: int):
        self.n_way, self.n_shot, self.n_query = n_way, n_shot, n_query

    def __call__(self, items: ItemBatch | list) -> Episode:
        if isinstance(items, ItemBatch):
            x, y = items
        else:
            x = torch.stack([torch.as_tensor(item[0]) for item in items])
            y = torch.as_tensor([int(item[1]) for item in items])
        per_class = self.n_shot + self.n_query
        x = x.view(self.n_way, per_class, *x.shape[1:])
        class_ids = y.view(self.n_way, per_class)[:, 0].clone()
        local = torch.arange(self.n_way)
        return Episode(
            support_x=x[:, :self.n_shot].reshape(-1, *x.shape[2:]),
            support_y=local.repeat_interleave(self.n_shot),
            query_x=x[:, self.n_shot:].reshape(-1, *x.shape[2:]),
            query_y=local.repeat_interleave(self.n_query),
            class_ids=class_ids,
        )
