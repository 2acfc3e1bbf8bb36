"""Caltech-UCSD Birds-200-2011 (Wah et al. 2011) from its official layout, with the zero-shot proposed split.

Reads ``<data root>/cub/CUB_200_2011/`` (``images.txt``, ``image_class_labels.txt``, ``bounding_boxes.txt``,
``images/<class folder>/<file>.jpg``). The proposed split of Xian et al. (``xlsa17/CUB/att_splits.mat``) indexes
images in the order of its feature file: class folders in order and file names sorted within each folder -- not
the order of ``images.txt``. Decoded images are cached as uint8 arrays under the user cache folder.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fewzero.atomic import atomic_path
from fewzero.errors import DataNotFoundError, FewzeroError
from fewzero.paths import resolve_data_root, user_cache_dir

TRAINVAL, TEST_SEEN, TEST_UNSEEN, NO_SPLIT = 0, 1, 2, -1
ORIGINAL_LONG_SIDE = 500  # CUB's images are at most 500 px on the long side, except a few; see _scaled_box


@dataclass
class CubImages:
    """Decoded CUB images of some classes.

    Attributes:
        images: (n, 3, S, S) uint8 RGB.
        labels: (n,) index into ``class_names``.
        class_names: class folder names, e.g. ``"001.Black_footed_Albatross"``, in folder order.
        image_ids: (n,) official 1-based ids of ``images.txt``.
        files: n paths relative to ``CUB_200_2011/images``.
        split: (n,) proposed-split role: 0 trainval (seen train), 1 test seen, 2 test unseen, -1 none.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    image_ids: torch.Tensor
    files: list[str]
    split: torch.Tensor


def _read_table(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DataNotFoundError(f"{path} is missing: point --data-root / FEWZERO_DATA at a folder with "
                                f"cub/CUB_200_2011 in the official layout")
    try:
        return [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, OSError) as exc:
        raise FewzeroError(f"{path} cannot be read as text ({type(exc).__name__}): replace it with the official "
                           f"CUB file") from None


def read_metadata(data_root: str | os.PathLike | None = None) -> dict:
    """Official CUB tables: ``files`` (id order), ``label`` (1-based class of each image), ``boxes``, ``classes``."""
    base = resolve_data_root(data_root) / "cub" / "CUB_200_2011"
    try:
        files = [row[1] for row in _read_table(base / "images.txt")]
        label = np.array([int(row[1]) for row in _read_table(base / "image_class_labels.txt")])
        classes = [row[1] for row in _read_table(base / "classes.txt")]
        boxes_path = base / "bounding_boxes.txt"
        boxes = np.array([[float(v) for v in row[1:5]] for row in _read_table(boxes_path)]) \
            if boxes_path.is_file() else None
    except (IndexError, ValueError) as exc:
        raise FewzeroError(f"{base}: a table (images.txt, image_class_labels.txt, classes.txt or "
                           f"bounding_boxes.txt) is malformed ({exc}): replace it with the official file") from None
    if boxes is not None and boxes.size and boxes.shape[1:] != (4,):
        raise FewzeroError(f"{base / 'bounding_boxes.txt'} must hold 4 numbers per image: replace it with the "
                           f"official file")
    if len(label) != len(files) or (boxes is not None and len(boxes) != len(files)):
        raise FewzeroError(f"{base}: images.txt, image_class_labels.txt and bounding_boxes.txt disagree on the "
                           f"number of images; replace them with the official files")
    return {"base": base, "files": files, "label": label, "boxes": boxes, "classes": classes}


def feature_file_order(files: list[str]) -> np.ndarray:
    """Positions of the xlsa17 feature file as image ids: ``order[p]`` is the 0-based id of its p-th image."""
    return np.array(sorted(range(len(files)), key=lambda i: tuple(files[i].split("/", 1))), dtype=np.int64)


def proposed_split(files: list[str], att_splits_path: str | os.PathLike) -> np.ndarray:
    """(n_images,) proposed-split role of every image (id order): TRAINVAL, TEST_SEEN, TEST_UNSEEN or NO_SPLIT."""
    from fewzero.data.xlsa17 import read_att_splits

    splits = read_att_splits(att_splits_path, need_att=False)
    order = feature_file_order(files)
    role = np.full(len(files), NO_SPLIT, dtype=np.int8)
    for code, key in ((TRAINVAL, "trainval_loc"), (TEST_SEEN, "test_seen_loc"), (TEST_UNSEEN, "test_unseen_loc")):
        loc = splits[key]
        if loc.size and loc.max() >= len(files):
            raise FewzeroError(f"{att_splits_path}: {key} points at image {loc.max() + 1} but images.txt lists "
                               f"{len(files)}: use the CUB att_splits.mat")
        if (role[order[loc]] != NO_SPLIT).any():
            raise FewzeroError(f"{att_splits_path}: an image is in two of trainval / test seen / test unseen")
        role[order[loc]] = code
    return role


def _select_classes(classes: Iterable[int | str] | None, names: list[str], base: Path) -> list[int]:
    """0-based class indices from 1-based ids or folder names; None means every class with an image folder."""
    if classes is None:
        chosen = [i for i, n in enumerate(names) if (base / "images" / n).is_dir()]
        if not chosen:
            raise DataNotFoundError(f"{base / 'images'} holds no class folders: put the CUB images there")
        return chosen
    index = {n: i for i, n in enumerate(names)}
    chosen = []
    for c in classes:
        if isinstance(c, str) and c in index:
            chosen.append(index[c])
        elif str(c).isdigit() and 1 <= int(c) <= len(names):
            chosen.append(int(c) - 1)
        else:
            raise FewzeroError(f"unknown CUB class {c!r}: give 1-based class ids or folder names from classes.txt")
    if len(set(chosen)) != len(chosen):
        raise FewzeroError("a CUB class is listed twice in classes: list each once")
    return sorted(chosen)


def _scaled_box(box: np.ndarray, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The official box (x, y, w, h in original pixels) mapped onto a possibly downscaled copy of ``size``.

    The original size is not recorded; CUB originals are 500 px on the long side except a few larger ones,
    so the long side is taken as ``max(500, the box's far edge)``. Exact for full-size images.
    """
    width, height = size
    x, y, w, h = box
    if x + w <= width + 1 and y + h <= height + 1 and max(width, height) >= ORIGINAL_LONG_SIDE:
        return x, y, w, h
    long_edge = x + w if width >= height else y + h
    scale = max(width, height) / max(ORIGINAL_LONG_SIDE, long_edge)
    return x * scale, y * scale, w * scale, h * scale


def _decode(path: Path, size: int, box: np.ndarray | None, margin: float) -> np.ndarray:
    """One image -> (3, size, size) uint8: a square around the box (or the centre square), resized."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
    width, height = rgb.size
    if box is None:
        side = min(width, height)
        cx, cy = width / 2, height / 2
    else:
        x, y, w, h = _scaled_box(box, (width, height))
        side = min(max(w, h) * (1 + 2 * margin), max(width, height))
        cx, cy = x + w / 2, y + h / 2
    # a square, clipped to the image where it does not fit (then slightly stretched by the resize)
    crop_w, crop_h = min(side, width), min(side, height)
    left = min(max(cx - crop_w / 2, 0.0), width - crop_w)
    top = min(max(cy - crop_h / 2, 0.0), height - crop_h)
    crop = rgb.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + crop_w, top + crop_h),
                      reducing_gap=2.0)
    return np.asarray(crop, dtype=np.uint8).transpose(2, 0, 1)


def _decode_all(meta: dict, ids: np.ndarray, size: int, bbox_crop: bool, margin: float,
                progress: bool) -> np.ndarray:
    """(len(ids), 3, size, size) uint8, decoded once per setting and cached."""
    base = meta["base"]
    h = hashlib.md5(f"{base.resolve()}:{size}:{bbox_crop}:{margin}".encode())
    h.update(ids.tobytes())
    for name in ("images.txt", "bounding_boxes.txt"):
        stat = (base / name).stat()
        h.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    cache = user_cache_dir() / "cub" / f"images_{size}_{'bbox' if bbox_crop else 'full'}_{h.hexdigest()[:16]}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as saved:
                return saved["images"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            cache.unlink(missing_ok=True)  # a damaged cache is rebuilt, never trusted
    from tqdm import tqdm

    if bbox_crop and meta["boxes"] is None:
        raise DataNotFoundError(f"{base / 'bounding_boxes.txt'} is missing: put it there or use bbox_crop=False")
    out = np.empty((len(ids), 3, size, size), dtype=np.uint8)
    for k, i in enumerate(tqdm(ids, desc="decoding CUB", disable=not progress, leave=False)):
        path = base / "images" / meta["files"][i]
        if not path.is_file():
            raise DataNotFoundError(f"{path} is missing: CUB images of the chosen classes must all be present; "
                                    f"choose classes whose folders are complete")
        try:
            out[k] = _decode(path, size, meta["boxes"][i] if bbox_crop else None, margin)
        except (OSError, ValueError, SyntaxError) as exc:
            raise FewzeroError(f"{path} is not a readable image ({type(exc).__name__}): replace it with the "
                               f"official CUB image") from None
    with atomic_path(cache, suffix=".npz") as tmp:
        np.savez(tmp, images=out)
    return out


def load_cub(data_root: str | os.PathLike | None = None, classes: Iterable[int | str] | None = None,
             image_size: int = 64, bbox_crop: bool = True, bbox_margin: float = 0.1,
             split: str | None = "proposed", progress: bool = True) -> CubImages:
    """CUB images of ``classes`` (default: every class folder present), with the proposed split mapped on.

    Args:
        classes: 1-based class ids (``range(1, 51)`` for CUB-50) or folder names.
        image_size: side of the square uint8 images.
        bbox_crop: crop a square around the official bounding box (plus ``bbox_margin`` on each side).
        split: ``"proposed"`` (needs ``xlsa17/CUB/att_splits.mat``) or None.
    """
    if int(image_size) != image_size or image_size < 8:
        raise FewzeroError(f"image_size must be an integer >= 8, got {image_size!r}")
    if split not in ("proposed", None):
        raise FewzeroError(f"unknown CUB split {split!r}: use 'proposed' or None")
    meta = read_metadata(data_root)
    chosen = _select_classes(classes, meta["classes"], meta["base"])
    label_of = {c + 1: k for k, c in enumerate(chosen)}  # official 1-based class id -> our label
    ids = np.array([i for i in feature_file_order(meta["files"]) if meta["label"][i] in label_of], dtype=np.int64)
    role = np.full(len(meta["files"]), NO_SPLIT, dtype=np.int8)
    if split == "proposed":
        from fewzero.data.xlsa17 import dataset_folder

        role = proposed_split(meta["files"], dataset_folder("CUB", data_root) / "att_splits.mat")
    images = _decode_all(meta, ids, int(image_size), bbox_crop, bbox_margin, progress)
    return CubImages(images=torch.from_numpy(images),
                     labels=torch.tensor([label_of[meta["label"][i]] for i in ids], dtype=torch.long),
                     class_names=[meta["classes"][c] for c in chosen],
                     image_ids=torch.from_numpy(ids + 1), files=[meta["files"][i] for i in ids],
                     split=torch.from_numpy(role[ids].astype(np.int64)))
