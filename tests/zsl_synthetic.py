"""A synthetic zero-shot problem whose classes are linear in their attributes (shared by the zsl tests)."""
from __future__ import annotations

import torch

from fewzero.data.zero_shot import ZeroShotData


def linear_problem(seed: int = 0, n_seen: int = 40, n_unseen: int = 10, n_attributes: int = 16, dim: int = 32,
                   per_class: int = 20, noise: float = 1.0, val_every: int = 5) -> ZeroShotData:
    """Binary class attributes a_c; an item of class c is ``A (2 a_c - 1) + noise`` for one random A (dim, attrs).

    Seen classes are 0..n_seen-1 (every ``val_every``-th is a validation class), unseen the rest.
    """
    g = torch.Generator().manual_seed(seed)
    n_classes = n_seen + n_unseen
    attributes = (torch.rand(n_classes, n_attributes, generator=g) < 0.5).float()
    mixing = torch.randn(dim, n_attributes, generator=g)

    def items(classes: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = classes.repeat_interleave(k)
        return (2 * attributes[y] - 1) @ mixing.T + noise * torch.randn(len(y), dim, generator=g), y

    seen, unseen = torch.arange(n_seen), torch.arange(n_seen, n_classes)
    train_x, train_y = items(seen, per_class)
    test_seen_x, test_seen_y = items(seen, per_class // 2)
    test_unseen_x, test_unseen_y = items(unseen, per_class // 2)
    return ZeroShotData(semantics=attributes, class_names=[f"class{c:02d}" for c in range(n_classes)],
                        seen_classes=seen, unseen_classes=unseen, train_x=train_x, train_y=train_y,
                        test_seen_x=test_seen_x, test_seen_y=test_seen_y, test_unseen_x=test_unseen_x,
                        test_unseen_y=test_unseen_y, val_classes=seen[::val_every] if val_every else None,
                        info={"dataset": "synthetic"})
