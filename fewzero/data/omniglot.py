"""Omniglot (Lake et al., Science 2015): 1,623 handwritten characters from 50 alphabets, 20 drawings each.

Reads ``<data root>/omniglot/images_{background,evaluation}.zip`` (or the extracted folders), downloading the
official zips when missing. Two splits:

- ``vinyals``: the character lists of Vinyals et al. 2016 (as used by Prototypical Networks); every rotation
  0/90/180/270 of a character is its own class. Subsets ``train`` / ``val`` / ``test`` / ``trainval``.
- ``lake``: no rotations. ``test`` is the 20 evaluation alphabets and ``trainval`` the 30 background alphabets
  (Lake et al. 2015); ``val`` holds out the last 5 background alphabets (by name) and ``train`` is the other 25.

Images are decoded once per image size and cached as a uint8 array under the user cache folder.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from fewzero.atomic import atomic_path
from fewzero.data.arrays import ArrayImageDataset
from fewzero.data.download import download as fetch_url
from fewzero.errors import DataNotFoundError, FewzeroError
from fewzero.paths import resolve_data_root, user_cache_dir
from fewzero.registry import DATASETS

ARCHIVES = ("images_background", "images_evaluation")
MD5 = {"images_background": "68d2efa1b9178cc56df9314c21c6e718",
       "images_evaluation": "6b91aef0f799c5bb55b94e3f2daec811"}
# download locations; $FEWZERO_OMNIGLOT_URL / $FEWZERO_VINYALS_URL (read at each download) take precedence
OMNIGLOT_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
VINYALS_URL = "https://raw.githubusercontent.com/jakesnell/prototypical-networks/master/data/omniglot/splits/vinyals/"
SPLITS = ("vinyals", "lake")
SUBSETS = ("train", "val", "test", "trainval")
LAKE_VAL_ALPHABETS = 5
_PNG = re.compile(r"(?:^|/)images_(?:background|evaluation)/([^/]+)/([^/]+)/[^/]+\.png$")
JUNK = ("__MACOSX",)  # folders that archivers add beside the data (files whose name starts with "." are skipped too)


def omniglot_url() -> str:
    """Where the official zips are downloaded from (``$FEWZERO_OMNIGLOT_URL``, read at each call)."""
    return os.environ.get("FEWZERO_OMNIGLOT_URL") or OMNIGLOT_URL


def vinyals_url() -> str:
    """Where the Vinyals split files are downloaded from (``$FEWZERO_VINYALS_URL``, read at each call)."""
    return os.environ.get("FEWZERO_VINYALS_URL") or VINYALS_URL


def omniglot_folder(data_root: str | os.PathLike | None = None) -> Path:
    """``<data root>/omniglot``; a data root (or omniglot entry) that is a file is a FewzeroError."""
    root = resolve_data_root(data_root)
    for path in (root, root / "omniglot"):
        if path.exists() and not path.is_dir():
            raise FewzeroError(f"data root {root} is not a folder ({path} is a file): point --data-root / "
                               f"FEWZERO_DATA at the folder that holds omniglot/")
    return root / "omniglot"


def fetch_archives(folder: Path, base_url: str | None = None, md5: dict[str, str] = MD5,
                   download_missing: bool = True, progress: bool = True) -> dict[str, Path]:
    """Locate (or download) both archives under ``folder``: name -> extracted folder or zip path."""
    base_url = base_url or omniglot_url()
    sources = {}
    for name in ARCHIVES:
        if (folder / name).is_dir():
            sources[name] = folder / name
        elif (folder / f"{name}.zip").is_file():
            sources[name] = folder / f"{name}.zip"
        elif download_missing:
            sources[name] = fetch_url(base_url + f"{name}.zip", folder / f"{name}.zip", md5=md5[name],
                                      progress=progress)
        else:
            raise DataNotFoundError(f"{folder / name}.zip is missing: put the Omniglot zips there, or point "
                                    f"--data-root / FEWZERO_DATA at a folder with omniglot/{name}.zip")
    return sources


def _decode(png: bytes, size: int) -> np.ndarray:
    """PNG bytes -> (size, size) uint8 with strokes bright (255) on a dark background."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        gray = image.convert("L")
        if gray.size != (size, size):
            gray = gray.resize((size, size), Image.Resampling.LANCZOS)
        return 255 - np.asarray(gray, dtype=np.uint8)


def _decode_drawing(png: bytes, size: int, source: Path, entry: str) -> np.ndarray:
    """``_decode``, with a file that is not a readable image reported by name."""
    from PIL import Image

    try:
        return _decode(png, size)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        what = "is empty (0 bytes)" if not png else f"is not a readable PNG image ({type(exc).__name__})"
        raise FewzeroError(f"{entry} in {source} {what}: replace {source} with the official Omniglot "
                           f"archive (delete it and it is downloaded again)") from None


def _skipped(parts: tuple[str, ...]) -> bool:
    """Files archivers and file browsers add (``__MACOSX/``, ``._x.png``, ``.DS_Store``), not drawings."""
    return any(part in JUNK or part.startswith(".") for part in parts)


def _check_entry_name(source: Path, name: str) -> None:
    """Refuse an archive entry whose path would lead outside the archive's folder (``../x``, ``/x``, ``C:``)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        raise FewzeroError(f"{source} holds an entry {name!r} that points outside its folder, so it is refused: "
                           f"delete {source} and download the official Omniglot archive")


def _read_source(source: Path) -> list[tuple[str, str, bytes]]:
    """(``"Alphabet/characterNN"``, file name, png bytes) for every drawing of one archive, in sorted path order."""
    try:
        if source.is_dir():
            files = [f for f in sorted(source.glob("*/*/*.png")) if not _skipped(f.relative_to(source).parts)]
            return [(f"{f.parent.parent.name}/{f.parent.name}", str(f.relative_to(source)), f.read_bytes())
                    for f in files]
        with zipfile.ZipFile(source) as archive:
            out = []
            names = sorted(archive.namelist())
            for name in names:
                _check_entry_name(source, name)
            for name in names:
                match = _PNG.search(name)
                if match and not _skipped(PurePosixPath(name).parts):
                    out.append((f"{match.group(1)}/{match.group(2)}", name, archive.read(name)))
            return out
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise FewzeroError(f"{source} is corrupt or truncated ({exc}): delete it so it is downloaded again, "
                           f"or replace it with a good copy") from None


def _cache_key(sources: dict[str, Path], size: int) -> str:
    h = hashlib.md5(str(size).encode())
    for name in ARCHIVES:
        stat = sources[name].stat()
        h.update(f"{name}:{sources[name].resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_drawings(data_root: str | os.PathLike | None = None, image_size: int = 28, download: bool = True,
                  progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Every Omniglot drawing, decoded once and cached.

    Returns:
        images: (32460, image_size, image_size) uint8.
        character: (32460,) index into ``names`` of each drawing's character.
        names: ``"Alphabet/characterNN"`` of each of the 1623 characters.
        background: (1623,) bool, whether each character is in the background set.
    """
    if int(image_size) != image_size or image_size < 4:
        raise FewzeroError(f"image_size must be an integer >= 4, got {image_size!r}")
    folder = omniglot_folder(data_root)
    sources = fetch_archives(folder, download_missing=download, progress=progress)
    cache = user_cache_dir() / "omniglot" / f"drawings_{image_size}_{_cache_key(sources, image_size)}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as saved:
                return saved["images"], saved["character"], saved["names"].tolist(), saved["background"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            cache.unlink(missing_ok=True)  # a damaged cache is rebuilt, never trusted
    from tqdm import tqdm

    images, character, names, background = [], [], [], []
    index: dict[str, int] = {}
    for name in ARCHIVES:
        drawings = _read_source(sources[name])
        if not drawings:
            raise FewzeroError(f"{sources[name]} holds no Omniglot drawings: replace it with the official archive")
        for char, entry, png in tqdm(drawings, desc=f"decoding {name}", disable=not progress, leave=False):
            if char not in index:
                index[char] = len(names)
                names.append(char)
                background.append(name == "images_background")
            character.append(index[char])
            images.append(_decode_drawing(png, image_size, sources[name], entry))
    arrays = dict(images=np.stack(images), character=np.asarray(character, dtype=np.int32),
                  names=np.asarray(names), background=np.asarray(background))
    with atomic_path(cache, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return arrays["images"], arrays["character"], names, arrays["background"]


def _vinyals_classes(folder: Path, subset: str, download: bool, progress: bool = True) -> list[str]:
    path = folder / "splits" / "vinyals" / f"{subset}.txt"
    if path.is_dir():
        raise FewzeroError(f"split file {path} is a directory: remove it so the split file is downloaded again")
    if not path.is_file():
        if not download:
            raise DataNotFoundError(f"{path} is missing: point --data-root / FEWZERO_DATA at a folder that has it")
        fetch_url(vinyals_url() + f"{subset}.txt", path, progress=progress)
    fix = "delete it so it is downloaded again, or replace it with the official file"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FewzeroError(f"split file {path} is not UTF-8 text: {fix}") from None
    except OSError as exc:
        raise FewzeroError(f"split file {path} cannot be read ({exc.strerror or exc}): {fix}") from None
    classes = [line.strip() for line in text.splitlines() if line.strip()]
    if not classes:
        raise FewzeroError(f"split file {path} lists no classes: {fix}")
    return classes


def _lake_classes(names: list[str], background: np.ndarray, subset: str) -> list[str]:
    if subset == "test":
        return [n for n, b in zip(names, background) if not b]
    alphabets = sorted({n.split("/")[0] for n, b in zip(names, background) if b})
    held_out = set(alphabets[-LAKE_VAL_ALPHABETS:])
    keep = {"trainval": set(alphabets), "val": held_out, "train": set(alphabets) - held_out}[subset]
    return [n for n, b in zip(names, background) if b and n.split("/")[0] in keep]


@DATASETS.register("omniglot")
def omniglot(subset: str = "train", split: str = "vinyals", data_root: str | None = None, image_size: int = 28,
             download: bool = True, progress: bool = True) -> ArrayImageDataset:
    """One subset of Omniglot as an ``ArrayImageDataset`` of (1, image_size, image_size) images."""
    if split not in SPLITS:
        raise FewzeroError(f"unknown Omniglot split {split!r}: choose one of {', '.join(SPLITS)}")
    if subset not in SUBSETS:
        raise FewzeroError(f"unknown Omniglot subset {subset!r}: choose one of {', '.join(SUBSETS)}")
    images, character, names, background = load_drawings(data_root, image_size, download, progress)
    folder = omniglot_folder(data_root)
    if split == "vinyals":
        classes = _vinyals_classes(folder, subset, download, progress)
    else:
        classes = [f"{n}/rot000" for n in _lake_classes(names, background, subset)]
        if not classes:
            raise FewzeroError(f"the lake split's {subset} subset has no characters in {folder}: use the "
                               f"official Omniglot archives (or --split vinyals)")
    char_index = {n: i for i, n in enumerate(names)}
    # one stable sort groups the drawings of each character (in file order) instead of a scan per character
    order = np.argsort(character, kind="stable")
    drawings_of = np.split(order, np.cumsum(np.bincount(character, minlength=len(names)))[:-1])
    item_image, item_rot, labels = [], [], []
    for label, cls in enumerate(classes):
        char, _, rot = cls.rpartition("/")
        if char not in char_index or not re.fullmatch(r"rot(000|090|180|270)", rot):
            raise FewzeroError(f"split entry {cls!r} names no Omniglot character and rotation: "
                               f"check the split file of {split}/{subset}")
        drawings = drawings_of[char_index[char]]
        item_image.append(drawings)
        item_rot.append(np.full(len(drawings), int(rot[3:]) // 90))
        labels.append(np.full(len(drawings), label))
    return ArrayImageDataset(torch.from_numpy(images), torch.from_numpy(np.concatenate(item_image)),
                             torch.from_numpy(np.concatenate(labels)), classes,
                             torch.from_numpy(np.concatenate(item_rot)))
