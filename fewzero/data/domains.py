"""Domains for unsupervised domain adaptation: one entry point, ``load_domain``, for built-in and user domains.

A domain ``spec`` is

- a built-in name: ``mnist`` and ``uci_digits`` (``fewzero.data.digits``: their 28x28 layout, bright strokes on
  black) or ``mnistm`` (``fewzero.data.mnistm``: the same MNIST images blended over colour photo patches, built
  with seed ``MNISTM_SEED``), or any name registered in ``fewzero.registry.DOMAINS``;
- a folder of images with one subfolder per class (the ImageFolder layout: ``<folder>/<class>/<image>``, class
  names are the sorted subfolder names; files with the extensions ``IMAGE_EXTENSIONS`` at any depth below a class
  folder; names starting with "." are skipped);
- an ``.npz`` file with ``x`` (N, H, W), (N, H, W, C) or (N, C, H, W), C 1 or 3, uint8 0..255 or floats in [0, 1],
  and ``y`` (N,) integer labels; class names are the distinct labels in increasing order, as strings, or
  ``class_names[label]`` when the file holds a ``class_names`` string array. Read with ``allow_pickle=False``.

Every domain is brought to the common input (channels, image_size, image_size), by default (3, 28, 28): grey is
replicated to 3 channels, RGB is kept (or made grey with the ITU-R 601 weights 0.299, 0.587, 0.114 when
channels=1), and images are resized bilinearly (antialiased when shrinking) to image_size x image_size, aspect
ratio not kept.

Subsets: a fixed, seeded split per domain. By default stratified (``digits.split_indices``): per class, ``val``
and ``test`` each hold ``floor(0.2 * smallest class size)`` images and ``train`` the rest. With ``stratify=False``
(what ``fewzero adapt`` uses for both domains, since a target's labels are unknown) 20 % / 20 % / the rest of one
seeded permutation of all items, which reads no label. Either way ``mnistm`` gets exactly the split of ``mnist``
(its test images are the colour versions of mnist's test images). The split is made on the domain's own classes,
before any remapping to a source domain's class order (``class_names``).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from fewzero.data import digits
from fewzero.data.arrays import ArrayImageDataset
from fewzero.data.mnistm import load_mnistm
from fewzero.errors import FewzeroError
from fewzero.registry import DOMAINS

DOMAIN_NAMES = ("mnist", "uci_digits", "mnistm")
COMMON_SIZE = 28
COMMON_CHANNELS = 3
SUBSETS = digits.SUBSETS
MNISTM_SEED = 0  # the build seed of the built-in mnistm (its split seed is load_domain's seed, as for mnist)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
GREY_601 = (0.299, 0.587, 0.114)


def to_common(images: torch.Tensor, *, image_size: int = COMMON_SIZE, channels: int = COMMON_CHANNELS) -> torch.Tensor:
    """(N, C, H, W) uint8, C 1 or 3 -> (N, channels, image_size, image_size) uint8 (grey replicated as a view)."""
    x = images
    if x.shape[1] == 3 and channels == 1:
        x = (x.float() * torch.tensor(GREY_601).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x.float(), size=(image_size, image_size), mode="bilinear", align_corners=False,
                          antialias=image_size < max(x.shape[-2:]))
    if x.dtype != torch.uint8:
        x = x.round().clamp(0, 255).to(torch.uint8)
    return x.expand(-1, channels, -1, -1) if x.shape[1] == 1 else x


def split_indices(labels: np.ndarray, subset: str, seed: int, *, num_classes: int, stratify: bool) -> np.ndarray:
    """Sorted indices of ``subset``: stratified per class (``digits.split_indices``), or, with ``stratify=False``,
    20 % / 20 % / the rest of one seeded permutation of all items, which reads no label (what an adaptation
    needs for its target, and for its source too, so that mnist and mnistm split their shared images alike)."""
    if stratify:
        return digits.split_indices(labels, subset, seed, num_classes=num_classes)
    order = np.random.default_rng(seed).permutation(len(labels))
    held = int(digits.HELD_FRACTION * len(labels))
    return np.sort({"test": order[:held], "val": order[held:2 * held], "train": order[2 * held:]}[subset])


def _builtin(name: str, *, subset: str, seed: int, image_size: int, channels: int,
             data_root: str | os.PathLike | None, stratify: bool = True) -> ArrayImageDataset:
    if name == "mnistm":
        images, labels = load_mnistm(seed=MNISTM_SEED, data_root=data_root)
        images = to_common(images, image_size=image_size, channels=channels)
    else:
        images, labels = digits._load(name, image_size)
        images = to_common(images, image_size=image_size, channels=channels)
    index = split_indices(labels, subset, seed, num_classes=len(digits.CLASS_NAMES), stratify=stratify)
    return ArrayImageDataset(images, torch.from_numpy(index), torch.from_numpy(labels[index]), digits.CLASS_NAMES)


def _register(name: str) -> None:
    def factory(*, subset: str, seed: int = 0, image_size: int = COMMON_SIZE, channels: int = COMMON_CHANNELS,
                data_root: str | os.PathLike | None = None, stratify: bool = True) -> ArrayImageDataset:
        """One subset of the built-in domain: items (channels, image_size, image_size) in [0, 1], digits 0..9."""
        return _builtin(name, subset=subset, seed=seed, image_size=image_size, channels=channels,
                        data_root=data_root, stratify=stratify)

    factory.__name__ = factory.__qualname__ = name
    DOMAINS.register(name)(factory)


for _name in DOMAIN_NAMES:
    _register(_name)


def _read_image(path: Path) -> torch.Tensor:
    """One image file -> (1 or 3, H, W) uint8 (grey modes stay grey, every other mode becomes RGB)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode.startswith(("I", "F")):  # 16/32-bit grey: scale by the range the values use
                a = np.asarray(image, dtype=np.float64)
                a = np.clip(a / (65535.0 if a.max() > 255 else 255.0), 0, 1) * 255
                return torch.from_numpy(a.round().astype(np.uint8))[None]
            image = image.convert("L" if image.mode in ("1", "L", "LA", "La") else "RGB")
            a = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise FewzeroError(f"{path} is not a readable image ({type(exc).__name__}): replace or remove it") from None
    return torch.from_numpy(a.copy())[None] if a.ndim == 2 else torch.from_numpy(a.transpose(2, 0, 1).copy())


def _scan_folder(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sorted subfolders) and (file, class index) pairs of an ImageFolder-layout folder."""
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    files, empty = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        files += [(str(p), label) for p in found]
        empty += [] if found else [name]
    if not files:
        raise FewzeroError(f"{folder} holds no images: put them in one subfolder per class ({folder}/<class>/"
                           f"<image>, extensions {' '.join(IMAGE_EXTENSIONS)})")
    if empty:
        more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
        raise FewzeroError(f"{folder}: the class folder(s) {', '.join(empty[:5])}{more} hold no images: add images "
                           f"or remove the folder(s)")
    return classes, files


@lru_cache(maxsize=4)
def _decode_folder(files: tuple[tuple[str, int, int], ...], image_size: int, channels: int) -> torch.Tensor:
    """(path, size, mtime) of every file -> (N, channels, image_size, image_size) uint8."""
    return torch.cat([to_common(_read_image(Path(f))[None], image_size=image_size, channels=channels)
                      for f, _, _ in files])


def _folder(folder: Path, image_size: int, channels: int) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    classes, files = _scan_folder(folder)
    key = tuple((f, (s := os.stat(f)).st_size, s.st_mtime_ns) for f, _ in files)
    return _decode_folder(key, image_size, channels), np.array([label for _, label in files]), classes


def _npz_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``x``, ``y`` and ``class_names`` (or None) of an .npz domain, loaded without running code."""
    with open(path, "rb") as handle:
        if handle.read(2) != b"PK":
            raise FewzeroError(f"{path} is not a readable .npz file (not a zip archive): save it with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x", "y") if k not in data.files]
            if missing:
                raise FewzeroError(f"{path} lacks the array(s) {' and '.join(missing)}: an .npz domain holds x "
                                   f"(images) and y (integer labels)")
            names = data["class_names"] if "class_names" in data.files else None
            return data["x"], data["y"], names
    except FewzeroError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise FewzeroError(f"{path} holds Python objects, which are not loaded (allow_pickle=False): save "
                               f"plain numeric arrays") from None
        raise FewzeroError(f"{path} is not a readable .npz file ({exc})") from None
    except Exception as exc:  # a truncated or foreign file: zipfile, OSError, EOFError ...
        raise FewzeroError(f"{path} is not a readable .npz file ({type(exc).__name__})") from None


@lru_cache(maxsize=4)
def _npz(path: str, stamp: tuple[int, int], image_size: int, channels: int
         ) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    x, y, names = _npz_arrays(Path(path))
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or 0 in x.shape:
        raise FewzeroError(f"{path}: x of shape {x.shape} is not images (N, H, W), (N, H, W, C) or (N, C, H, W) "
                           f"with C 1 or 3")
    if y.ndim != 1 or len(y) != len(x):
        raise FewzeroError(f"{path}: y must hold one label per image of x (x has {len(x)}, y has shape {y.shape})")
    if not np.issubdtype(y.dtype, np.integer):
        raise FewzeroError(f"{path}: y must hold integer labels, not {y.dtype}")
    if x.dtype == np.uint8:
        pixels = x
    elif np.issubdtype(x.dtype, np.floating) and np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1:
        pixels = np.round(x * 255.0).astype(np.uint8)
    elif np.issubdtype(x.dtype, np.integer) and x.min() >= 0 and x.max() <= 255:
        pixels = x.astype(np.uint8)
    else:
        raise FewzeroError(f"{path}: x must hold uint8 pixels 0..255 or floats in [0, 1], not {x.dtype} values "
                           f"from {x.min()} to {x.max()}")
    values, labels = np.unique(y, return_inverse=True)
    if names is None:
        classes = [str(v) for v in values]
    else:
        if names.ndim != 1 or names.dtype.kind not in "US" or values[0] < 0 or values[-1] >= len(names):
            raise FewzeroError(f"{path}: class_names must be a 1-D string array with a name for every label in y")
        classes = [str(n) for n in names[values]]
    if len(set(classes)) != len(classes):
        raise FewzeroError(f"{path}: class_names names a class twice: give every class its own name")
    images = to_common(torch.from_numpy(np.ascontiguousarray(pixels)), image_size=image_size, channels=channels)
    return images, labels.astype(np.int64), classes


def _check(subset: str, seed: int, image_size: int, channels: int, class_names: Sequence[str] | None) -> None:
    if subset not in SUBSETS:
        raise FewzeroError(f"unknown subset {subset!r}: choose one of {', '.join(SUBSETS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise FewzeroError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 8 <= image_size <= 512:
        raise FewzeroError(f"image_size must be an integer from 8 to 512, got {image_size!r}")
    if isinstance(channels, bool) or channels not in (1, 3):
        raise FewzeroError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if class_names is not None and (isinstance(class_names, str) or not all(isinstance(n, str) for n in class_names)
                                    or len(set(class_names)) != len(class_names)):
        raise FewzeroError(f"class_names must be a list of distinct class names, got {class_names!r}")


def _remap(dataset: ArrayImageDataset, class_names: Sequence[str], spec: str) -> None:
    """Relabel ``dataset`` in place to the order of ``class_names`` (the source domain's classes)."""
    missing = [name for name in dataset.class_names if name not in class_names]
    if missing:
        known = ", ".join(list(class_names)[:20]) + (", ..." if len(class_names) > 20 else "")
        raise FewzeroError(f"domain {spec}: the class(es) {', '.join(missing)} are not among the source domain's "
                           f"classes ({known}): adapt between domains with the same classes")
    order = {name: i for i, name in enumerate(class_names)}
    lookup = torch.tensor([order[name] for name in dataset.class_names], dtype=torch.long)
    dataset.labels = lookup[dataset.labels]
    dataset.class_names = list(class_names)


def load_domain(spec: str | os.PathLike, *, subset: str, seed: int = 0, image_size: int = COMMON_SIZE,
                channels: int = COMMON_CHANNELS, data_root: str | os.PathLike | None = None,
                class_names: Sequence[str] | None = None, stratify: bool = True) -> ArrayImageDataset:
    """One subset of a domain (see the module): items (channels, image_size, image_size) floats in [0, 1].

    ``seed`` fixes the split (per class, or with ``stratify=False`` label-blind: see ``split_indices``);
    ``class_names`` (the source domain's) relabels the items to that class order.
    The dataset carries ``.domain`` (``spec``), ``.subset`` and ``.class_names``.
    """
    spec = os.fspath(spec)
    _check(subset, seed, image_size, channels, class_names)
    if spec in DOMAINS:
        dataset = DOMAINS.get(spec)(subset=subset, seed=seed, image_size=image_size, channels=channels,
                                    data_root=data_root, stratify=stratify)
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            images, labels, classes = _folder(path.resolve(), image_size, channels)
        elif path.is_file() and path.suffix.lower() == ".npz":
            stat = path.stat()
            images, labels, classes = _npz(str(path.resolve()), (stat.st_size, stat.st_mtime_ns), image_size,
                                           channels)
        else:
            raise FewzeroError(f"unknown domain {spec!r}: give a built-in name ({', '.join(DOMAINS.available())}), "
                               f"a folder with one subfolder of images per class, or an .npz file with x and y")
        index = split_indices(labels, subset, seed, num_classes=len(classes), stratify=stratify)
        if index.size == 0 and not stratify:
            raise FewzeroError(f"domain {spec} has no {subset} images: it holds {len(labels)} image(s), and val and "
                               f"test each take 20 % of them, so it needs at least 5")
        if index.size == 0:
            counts = np.bincount(labels, minlength=len(classes))
            raise FewzeroError(f"domain {spec} has no {subset} images: its smallest class {classes[counts.argmin()]} "
                               f"has {counts.min()} image(s), and val and test each take 20 % of the smallest "
                               f"class, so every class needs at least 5 images")
        dataset = ArrayImageDataset(images, torch.from_numpy(index), torch.from_numpy(labels[index]), classes)
    if class_names is not None:
        _remap(dataset, class_names, spec)
    dataset.domain, dataset.subset = spec, subset
    return dataset
