"""The typed unit of few-shot work: one N-way K-shot Q-query task."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


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
