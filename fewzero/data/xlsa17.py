"""The "proposed split" of Xian et al., "Zero-Shot Learning -- The Good, the Bad and the Ugly" (TPAMI 2018).

Reads ``<data root>/xlsa17/<NAME>/`` (or the release's own ``xlsa17/data/<NAME>/``) for NAME in CUB, AWA1, AWA2,
SUN, APY:

- ``res101.mat``: ``features`` (2048, N) ResNet-101 features and ``labels`` (N, 1), 1-based class indices into
  the columns of ``att`` (the order of ``allclasses_names``, which for CUB is not the folder order);
- ``att_splits.mat``: ``att`` / ``original_att`` (dim, n_classes), ``allclasses_names`` and the 1-based image
  indices ``trainval_loc`` (seen train), ``test_seen_loc`` and ``test_unseen_loc``;
- ``valclasses{1,2,3}.txt``: seen classes held out for tuning hyper-parameters.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from fewzero.data.semantics import check_semantics, class_text_semantics, readable_name, xlsa17_attributes
from fewzero.errors import DataNotFoundError, FewzeroError
from fewzero.paths import resolve_data_root
from fewzero.data.zero_shot import ZeroShotData

DATASETS = ("CUB", "AWA1", "AWA2", "SUN", "APY")
SPLIT_KEYS = ("allclasses_names", "trainval_loc", "test_seen_loc", "test_unseen_loc")
SEMANTICS = ("attributes", "original", "text")


def _loadmat(path: Path) -> dict:
    from scipy.io import loadmat

    if not path.is_file():
        raise DataNotFoundError(f"{path} is missing: download the xlsa17 release (Xian et al.) and put "
                                f"{path.name} there, or point --data-root / FEWZERO_DATA at it")
    try:
        return loadmat(path)
    except NotImplementedError:
        raise FewzeroError(f"{path} is a MATLAB v7.3 file: re-save it with -v7 (scipy cannot read v7.3)") from None
    except (ValueError, OSError, TypeError) as exc:
        raise FewzeroError(f"{path} is not a readable .mat file ({exc}): replace it with the original") from None


def dataset_folder(name: str, data_root: str | os.PathLike | None = None) -> Path:
    """``<root>/xlsa17/<NAME>``, or ``<root>/xlsa17/data/<NAME>`` as unpacked from the release zip."""
    if name.upper() not in DATASETS:
        raise FewzeroError(f"unknown xlsa17 dataset {name!r}: choose one of {', '.join(DATASETS)}")
    root = resolve_data_root(data_root) / "xlsa17"
    for folder in (root / name.upper(), root / "data" / name.upper()):
        if folder.is_dir():
            return folder
    return root / name.upper()


def read_att_splits(path: str | os.PathLike, need_att: bool = True) -> dict:
    """``att_splits.mat`` checked: class names as ``str``, 0-based ``*_loc`` index arrays, attributes as-is."""
    path = Path(path)
    raw = _loadmat(path)
    missing = [k for k in SPLIT_KEYS + (("att",) if need_att else ()) if k not in raw]
    if missing:
        raise FewzeroError(f"{path} lacks {', '.join(missing)}: use att_splits.mat of the xlsa17 release")
    out = {k: raw[k] for k in ("att", "original_att") if k in raw}
    out["names"] = [str(np.asarray(n).ravel()[0]) if np.asarray(n).size else "" for n in raw["allclasses_names"].ravel()]
    for key in ("trainval_loc", "test_seen_loc", "test_unseen_loc"):
        loc = np.asarray(raw[key]).astype(np.int64).ravel()
        if loc.size and loc.min() < 1:
            raise FewzeroError(f"{path}: {key} holds index {loc.min()} but indices are 1-based: the file is damaged")
        out[key] = loc - 1
    if "att" in out and out["att"].shape[1] != len(out["names"]):
        raise FewzeroError(f"{path}: att has {out['att'].shape[1]} class columns but allclasses_names has "
                           f"{len(out['names'])}: the file is damaged")
    return out


def read_res101(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``res101.mat`` -> features (N, dim) float32 and 0-based labels (N,) int64."""
    path = Path(path)
    raw = _loadmat(path)
    missing = [k for k in ("features", "labels") if k not in raw]
    if missing:
        raise FewzeroError(f"{path} lacks {', '.join(missing)}: use res101.mat of the xlsa17 release")
    features, labels = np.asarray(raw["features"]), np.asarray(raw["labels"]).astype(np.int64).ravel()
    if features.ndim != 2 or features.shape[1] != labels.size:
        raise FewzeroError(f"{path}: features have shape {features.shape} but there are {labels.size} labels: "
                           f"features must be (dim, {labels.size}), one column per image")
    if labels.size and labels.min() < 1:
        raise FewzeroError(f"{path}: labels must be 1-based class indices, found {labels.min()}")
    return np.ascontiguousarray(features.T, dtype=np.float32), labels - 1


def _class_list(folder: Path, filename: str, names: list[str]) -> list[int] | None:
    path = folder / filename
    if not path.is_file():
        return None
    index = {n: i for i, n in enumerate(names)}
    try:
        listed = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, OSError) as exc:
        raise FewzeroError(f"{path} cannot be read as text ({type(exc).__name__}): replace it with the file of "
                           f"the xlsa17 release") from None
    unknown = [n for n in listed if n not in index]
    if unknown:
        raise FewzeroError(f"{path} names class {unknown[0]!r} which is not in allclasses_names: the split files "
                           f"do not belong together")
    return [index[n] for n in listed]


def load_xlsa17(name: str, semantics: str = "attributes", data_root: str | os.PathLike | None = None,
                features_file: str | os.PathLike | None = None, val_split: int = 1,
                text_model: str | None = None, progress: bool = True) -> ZeroShotData:
    """One xlsa17 dataset as ``ZeroShotData`` (labels index ``allclasses_names``).

    Args:
        name: CUB, AWA1, AWA2, SUN or APY.
        semantics: ``attributes`` (``att``), ``original`` (``original_att``) or ``text`` (class-name embeddings).
        features_file: another ``res101.mat``-format file (default ``<folder>/res101.mat``).
        val_split: which ``valclasses<k>.txt`` gives ``val_classes`` (0: none).
        text_model: sentence-transformers model for ``text`` (default all-MiniLM-L6-v2).
    """
    if semantics not in SEMANTICS:
        raise FewzeroError(f"unknown semantics {semantics!r} for xlsa17: choose one of {', '.join(SEMANTICS)}")
    folder = dataset_folder(name, data_root)
    splits = read_att_splits(folder / "att_splits.mat", need_att=semantics != "text")
    features, labels = read_res101(Path(features_file) if features_file else folder / "res101.mat")
    names, n = splits["names"], len(splits["names"])
    for key in ("trainval_loc", "test_seen_loc", "test_unseen_loc"):
        if splits[key].size and splits[key].max() >= len(labels):
            raise FewzeroError(f"att_splits.mat's {key} points at image {splits[key].max() + 1} but the features "
                               f"file has {len(labels)} images: features and splits must come from one release")
    if labels.size and labels.max() >= n:
        raise FewzeroError(f"res101.mat has label {labels.max() + 1} but att_splits.mat knows {n} classes: "
                           f"features and splits must come from one release")
    tv, ts, tu = (splits[k] for k in ("trainval_loc", "test_seen_loc", "test_unseen_loc"))
    seen, unseen = np.unique(labels[tv]), np.unique(labels[tu])
    if np.setdiff1d(np.unique(labels[ts]), seen).size:
        raise FewzeroError("test_seen_loc holds images of classes absent from trainval_loc: the split is damaged")
    if semantics == "text":
        matrix = class_text_semantics([readable_name(c) for c in names], model=text_model or "all-MiniLM-L6-v2",
                                      progress=progress)
    else:
        matrix = xlsa17_attributes(splits, original=semantics == "original")
    matrix = check_semantics(matrix, names)
    val = _class_list(folder, f"valclasses{val_split}.txt", names) if val_split else None
    val_classes = None
    if val is not None:
        kept = sorted(set(val) & set(seen.tolist()))
        val_classes = torch.tensor(kept, dtype=torch.long) if kept else None
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return ZeroShotData(
        semantics=matrix, class_names=names, seen_classes=t(seen), unseen_classes=t(unseen),
        train_x=t(features[tv]), train_y=t(labels[tv]), test_seen_x=t(features[ts]), test_seen_y=t(labels[ts]),
        test_unseen_x=t(features[tu]), test_unseen_y=t(labels[tu]), val_classes=val_classes,
        info={"dataset": f"xlsa17-{name.upper()}", "features": "ResNet-101 (xlsa17 res101.mat)",
              "semantics": semantics if semantics != "text" else f"text: class names, {text_model or 'all-MiniLM-L6-v2'}",
              "val_split": val_split, "folder": str(folder)})
