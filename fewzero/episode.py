"""The typed unit of few-shot work: one N-way K-shot Q-query task."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from fewzero.errors import FewzeroError


@dataclass
class Episode:
    """One task. Labels are episode-local (0..n_way-1); ``class_ids`` maps them back to dataset classes.

    Attributes:
        support_x: (n_way * n_shot, *item_shape) support items, grouped by class.
        support_y: (n_way * n_shot,) episode-local labels.
        query_x: (n_way * n_query, *item_shape) query items, grouped by class.
        query_y: (n_way * n_query,) episode-local labels.
        class_ids: (n_way,) dataset class index of each episode-local label.
        class_semantics: optional (n_way, dim) semantic vectors of the episode's classes (zero-shot).
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    class_ids: torch.Tensor
    class_semantics: torch.Tensor | None = None

    def __post_init__(self) -> None:
        """Check shapes and labels, so that a malformed episode fails here rather than deep inside a learner."""
        for name in ("support_x", "support_y", "query_x", "query_y", "class_ids"):
            if not isinstance(getattr(self, name), torch.Tensor):
                raise FewzeroError(f"Episode.{name} must be a torch.Tensor, got {type(getattr(self, name)).__name__}")
        _check_index_vector("class_ids", self.class_ids)
        n_way = self.class_ids.numel()
        if n_way == 0:
            raise FewzeroError("Episode.class_ids is empty: an episode needs at least one class")
        for items, labels in (("support_x", "support_y"), ("query_x", "query_y")):
            _check_labels(labels, getattr(self, labels), n_way)
            _check_lengths(items, getattr(self, items), labels, getattr(self, labels))
        if self.class_semantics is not None:
            semantics = self.class_semantics
            if not isinstance(semantics, torch.Tensor) or semantics.ndim != 2 or semantics.shape[0] != n_way:
                shape = tuple(semantics.shape) if isinstance(semantics, torch.Tensor) else type(semantics).__name__
                raise FewzeroError(f"Episode.class_semantics must be a (n_way={n_way}, dim) tensor, got {shape}")

    @property
    def n_way(self) -> int:
        return int(self.class_ids.numel())

    @property
    def n_shot(self) -> int:
        return self.support_y.numel() // self.n_way

    @property
    def n_query(self) -> int:
        return self.query_y.numel() // self.n_way

    def to(self, device: torch.device | str) -> "Episode":
        """A copy with every tensor on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in moved.items()}
        return replace(self, **moved)


def is_integer_tensor(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` holds integers (labels), not floats, complex numbers or booleans."""
    return not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool)


def _check_index_vector(name: str, tensor: torch.Tensor) -> None:
    if tensor.ndim != 1 or not is_integer_tensor(tensor):
        raise FewzeroError(f"Episode.{name} must be a 1-D integer tensor, got shape {tuple(tensor.shape)} and "
                           f"dtype {tensor.dtype}")


def _check_labels(name: str, labels: torch.Tensor, n_way: int) -> None:
    _check_index_vector(name, labels)
    # values are checked on the CPU only (where episodes are built): on an accelerator it would stall the stream
    if labels.numel() and labels.device.type == "cpu" and (int(labels.min()) < 0 or int(labels.max()) >= n_way):
        raise FewzeroError(f"Episode.{name} must hold episode-local labels 0..{n_way - 1} (n_way = "
                           f"len(class_ids) = {n_way}), got values {int(labels.min())}..{int(labels.max())}")


def _check_lengths(items_name: str, items: torch.Tensor, labels_name: str, labels: torch.Tensor) -> None:
    if items.ndim == 0 or items.shape[0] != labels.shape[0]:
        count = items.shape[0] if items.ndim else "a scalar"
        raise FewzeroError(f"Episode.{items_name} has {count} items but {labels_name} has {labels.shape[0]} "
                           f"labels: give one label per item")
