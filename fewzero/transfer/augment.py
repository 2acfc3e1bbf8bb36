"""Data augmentation for supervised pretraining: random translations.

A character, a digit or a cropped object stays what it is when moved by a few pixels; cross-entropy over thousands
of base classes with 20 images each (Omniglot) overfits in a few epochs without such variation.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Move each image by up to ``max_shift`` pixels along each axis, the uncovered border repeating the edge.

    Args:
        images: (B, C, H, W) floats.
        max_shift: largest shift in pixels (0: the images unchanged).
        generator: the source of the shifts (B x 2 integers in [-max_shift, max_shift]), for reproducible runs.

    Returns:
        (B, C, H, W): image b is ``pad(images[b])[dy:dy + H, dx:dx + W]`` for its own offsets (dy, dx) in
        [0, 2 * max_shift], the padding replicating the edge pixels.
    """
    if max_shift == 0:
        return images
    batch, _, height, width = images.shape
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (batch, 2), generator=generator).tolist()
    return torch.stack([padded[b, :, dy:dy + height, dx:dx + width] for b, (dy, dx) in enumerate(offsets)])


def batch_generator(seed: int, epoch: int, first: int) -> torch.Generator:
    """The generator of one batch's augmentation, fixed by (seed, epoch, the batch's first position), so that a
    resumed run draws what the uninterrupted one drew."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 1_000_003 + first) % 2 ** 63)
