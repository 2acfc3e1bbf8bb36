"""An in-memory image dataset over a uint8 array, with optional per-item rotation."""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.utils.data import Dataset


class ItemBatch(NamedTuple):
    """Several dataset items fetched at once (what a dataset's ``__getitems__`` may return)."""

    x: torch.Tensor  # (n_items, *item_shape)
    y: torch.Tensor  # (n_items,)


class ArrayImageDataset(Dataset):
    """Items are (image, label) pairs drawn from a shared uint8 image array.

    Args:
        images: (n_images, H, W) or (n_images, C, H, W) uint8 pixels.
        item_image: (n_items,) which image each item shows.
        labels: (n_items,) class index of each item, in ``0..len(class_names)-1``.
        class_names: one name per class.
        item_rotation: optional (n_items,) number of 90-degree counter-clockwise turns of each item.

    ``dataset[i]`` is ``(x, label)`` with ``x`` a float (C, H, W) tensor in [0, 1]; ``__getitems__`` fetches a batch.
    """

    def __init__(self, images: torch.Tensor, item_image: torch.Tensor, labels: torch.Tensor,
                 class_names: Sequence[str], item_rotation: torch.Tensor | None = None):
        self.images = images if images.ndim == 4 else images.unsqueeze(1)
        self.item_image = item_image.long()
        self.labels = labels.long()
        self.class_names = list(class_names)
        self.item_rotation = None if item_rotation is None or not bool(item_rotation.any()) else item_rotation.long()

    def __len__(self) -> int:
        return int(self.labels.numel())

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        batch = self.__getitems__([index])
        return batch.x[0], int(batch.y[0])

    def __getitems__(self, indices: Sequence[int]) -> ItemBatch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        x = self.images[self.item_image[idx]]
        if self.item_rotation is not None:
            turns = self.item_rotation[idx]
            for k in (1, 2, 3):
                mask = turns == k
                if mask.any():
                    x[mask] = torch.rot90(x[mask], k, dims=(-2, -1))
        return ItemBatch(x.float().div_(255.0), self.labels[idx])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
