"""A zero-shot learner that reads one block of the class semantics, so that learners on different semantics (CUB's
attributes and text embeddings of the same classes) can sit side by side in one ``ZeroShotEnsemble``.

    both = load_zero_shot("cub50", semantics="attributes+text")        # rows [a / sqrt(2), t / sqrt(2)]
    text_ale = SemanticBlock(ALE(), start=312, stop=312 + 384)         # ALE on the text block only
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
from torch.nn import functional as F

from fewzero.errors import FewzeroError
from fewzero.zsl.base import ZeroShotLearner


class SemanticBlock(ZeroShotLearner):
    """``learner`` on the columns ``start:stop`` of every semantic vector, each row re-normalised to unit length.

    Blocks that were L2-normalised before they were concatenated (``attributes+text`` weights each block by
    1/sqrt(2)) come back as they were alone, so the learner scores as it would on that semantics alone.
    """

    def __init__(self, learner: ZeroShotLearner, *, start: int, stop: int):
        super().__init__(normalize_semantics=False)  # the block is normalised here, the learner then does its own
        if not isinstance(learner, ZeroShotLearner):
            raise FewzeroError(f"SemanticBlock wraps a zero-shot learner, got a {type(learner).__name__}")
        if not 0 <= start < stop:
            raise FewzeroError(f"a semantic block needs 0 <= start < stop, got start {start} and stop {stop}")
        self.learner, self.start, self.stop = learner, int(start), int(stop)

    def _block(self, semantics: torch.Tensor) -> torch.Tensor:
        if semantics.shape[1] < self.stop:
            raise FewzeroError(f"semantics have {semantics.shape[1]} columns but this block reads columns "
                               f"{self.start}:{self.stop}: pass the semantics the block was made for")
        return block_semantics(semantics, self.start, self.stop)

    def _fit(self, x: torch.Tensor, y: torch.Tensor, semantics: torch.Tensor) -> None:
        self.learner.fit(x, y, self._block(semantics))

    def _score(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        return self.learner(x, self._block(semantics))


def block_semantics(semantics: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Columns ``start:stop`` of (C, a) semantics, each row L2-normalised: what a ``SemanticBlock`` learner sees."""
    return F.normalize(semantics[:, start:stop].float(), dim=1)


def block_view(data, start: int, stop: int) -> SimpleNamespace:
    """``data``'s class names with its semantics' block ``start:stop`` as ``block_semantics`` gives it: what a class
    graph of a block learner is built on (``fewzero.zsl.graph_settings.resolve_graph`` reads these two)."""
    return SimpleNamespace(class_names=data.class_names, semantics=block_semantics(data.semantics, start, stop))
