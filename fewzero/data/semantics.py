"""Class semantics: one vector per class, from attribute annotations or from sentence embeddings of text.

    cub_attributes(["001.Black_footed_Albatross", ...])        # (n, 312) from class_attribute_labels_continuous.txt
    text_embeddings(["Black-footed Albatross", ...])           # (n, 384), see fewzero.data.text_embeddings
    cub_text(["001.Black_footed_Albatross", ...], source="both")  # names + descriptors_cub.json
    cub_semantics("attributes+text", ["001.Black_footed_Albatross", ...])  # -> (matrix, one-line description)

Every kind is interchangeable for every zero-shot learner: a ``(n_classes, dim)`` float tensor whose rows follow
the given class order. ``cub_semantics`` builds text semantics with prompt ensembles and a pooling from
``fewzero.data.text_semantics``; ``cub_text`` keeps the plain single-template average.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence

import numpy as np
import torch

from fewzero.data.text_embeddings import DEFAULT_TEXT_MODEL, text_embeddings
from fewzero.data.text_semantics import (BARE_TEMPLATES, DEFAULT_TEXT_POOLING, DESCRIPTOR_TEMPLATES, NAME_TEMPLATES,
                                         TEXT_POOLINGS, TEXT_SOURCES, check_pooling, concat_blocks, text_class_matrix)
from fewzero.errors import DataNotFoundError, FewzeroError
from fewzero.paths import resolve_data_root

SEMANTICS_KINDS = ("attributes", "text", "attributes+text")
__all__ = ["DEFAULT_TEXT_MODEL", "DEFAULT_TEXT_POOLING", "SEMANTICS_KINDS", "TEXT_POOLINGS", "TEXT_SOURCES",
           "check_semantics", "class_text_semantics", "cub_attributes", "cub_class_folders", "cub_descriptions",
           "cub_semantics", "cub_text", "cub_text_semantics", "l2_normalize", "readable_name", "text_embeddings",
           "xlsa17_attributes"]


def l2_normalize(matrix: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length; all-zero rows stay zero. (n, d) -> (n, d)."""
    return matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)


def check_semantics(matrix: torch.Tensor, class_names: Sequence[str]) -> torch.Tensor:
    """Refuse a semantics matrix that does not give one finite vector per class; returns it as float32."""
    if matrix.ndim != 2 or matrix.shape[0] != len(class_names):
        raise FewzeroError(f"semantics has shape {tuple(matrix.shape)} but there are {len(class_names)} classes: "
                           f"give one row per class")
    bad = ~torch.isfinite(matrix).all(1)
    if bad.any():
        raise FewzeroError(f"class {class_names[int(bad.nonzero()[0])]!r} has NaN or infinite semantics: "
                           f"fix or drop that class")
    return matrix.float()


# --- attributes ----------------------------------------------------------------------------------------------------

def cub_class_folders(data_root: str | os.PathLike | None = None) -> list[str]:
    """The 200 CUB class folder names in official order, e.g. ``"001.Black_footed_Albatross"``."""
    path = resolve_data_root(data_root) / "cub" / "CUB_200_2011" / "classes.txt"
    if not path.is_file():
        raise DataNotFoundError(f"{path} is missing: point --data-root / FEWZERO_DATA at a folder with "
                                f"cub/CUB_200_2011 (the official CUB_200_2011 layout)")
    return [line.split(maxsplit=1)[1].strip() for line in path.read_text().splitlines() if line.strip()]


def cub_attributes(classes: Sequence[str], data_root: str | os.PathLike | None = None,
                   normalize: bool = True) -> torch.Tensor:
    """CUB class-level attributes (percent of images showing each attribute) for the given class folders.

    Args:
        classes: class folder names, e.g. ``["001.Black_footed_Albatross", ...]``; rows follow this order.
        normalize: scale each row to unit L2 norm (as xlsa17's ``att``); else the raw percentages / 100.

    Returns:
        (len(classes), 312) float32.
    """
    path = resolve_data_root(data_root) / "cub" / "CUB_200_2011" / "attributes" / "class_attribute_labels_continuous.txt"
    if not path.is_file():
        raise DataNotFoundError(f"{path} is missing: it ships with CUB_200_2011 (attributes/); put it there")
    table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    folders = cub_class_folders(data_root)
    if table.shape[0] != len(folders):
        raise FewzeroError(f"{path} has {table.shape[0]} rows but classes.txt lists {len(folders)} classes: "
                           f"replace it with the official file")
    row = {name: i for i, name in enumerate(folders)}
    missing = [c for c in classes if c not in row]
    if missing:
        raise FewzeroError(f"class {missing[0]!r} has no CUB attributes: use folder names from classes.txt")
    matrix = torch.from_numpy(table[[row[c] for c in classes]] / 100.0).float()
    matrix = check_semantics(matrix, list(classes))
    return l2_normalize(matrix) if normalize else matrix


def xlsa17_attributes(att_splits: dict, original: bool = False) -> torch.Tensor:
    """xlsa17's class embeddings as (n_classes, dim): ``att`` (L2-normalised) or ``original_att``."""
    key = "original_att" if original else "att"
    if key not in att_splits:
        raise FewzeroError(f"att_splits.mat has no {key!r}: use the file of the xlsa17 release")
    return torch.from_numpy(np.asarray(att_splits[key], dtype=np.float64).T.copy()).float()


# --- text ------------------------------------------------------------------------------------------------------

def class_text_semantics(names: Sequence[str], descriptions: Sequence[Sequence[str]] | None = None,
                         source: str = "names", model: str = DEFAULT_TEXT_MODEL,
                         progress: bool = False) -> torch.Tensor:
    """One text embedding per class from its readable name and/or its descriptions.

    ``names`` embeds the name; ``descriptions`` averages the embeddings of the class's descriptions;
    ``both`` averages embeddings of ``"<name>, which has <description>"`` (the name alone if it has none).

    Returns:
        (len(names), dim) float32 with unit-norm rows.
    """
    if source not in TEXT_SOURCES:
        raise FewzeroError(f"unknown text source {source!r}: choose one of {', '.join(TEXT_SOURCES)}")
    if source == "names":
        return text_embeddings(names, model, progress=progress)
    if descriptions is None or len(descriptions) != len(names):
        raise FewzeroError(f"text source {source!r} needs one list of descriptions per class")
    texts, owner = [], []
    for i, (name, descs) in enumerate(zip(names, descriptions)):
        if source == "descriptions" and not descs:
            raise FewzeroError(f"class {name!r} has no descriptions: use --set text_source=both or names")
        items = [f"{name}, which has {d}" for d in descs] if source == "both" else list(descs)
        texts += items or [name]
        owner += [i] * max(len(items), 1)
    vectors = text_embeddings(texts, model, progress=progress)
    sums = torch.zeros(len(names), vectors.shape[1]).index_add_(0, torch.tensor(owner), vectors)
    return l2_normalize(sums)


def readable_name(class_name: str) -> str:
    """``"001.Black_footed_Albatross"`` -> ``"Black footed Albatross"``; ``"grizzly+bear"`` -> ``"grizzly bear"``."""
    return re.sub(r"[_+]+", " ", re.sub(r"^\d+\.", "", class_name)).strip()


def _norm(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


def cub_descriptions(classes: Sequence[str], data_root: str | os.PathLike | None = None
                     ) -> tuple[list[str], list[list[str]]]:
    """Common names and visual descriptions (``descriptors_cub.json``) of CUB class folders, in that order."""
    path = resolve_data_root(data_root) / "cub" / "descriptors_cub.json"
    if not path.is_file():
        raise DataNotFoundError(f"{path} is missing: put descriptors_cub.json (Menon & Vondrick 2023) there, "
                                f"or use --set text_source=names")
    try:
        table = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise FewzeroError(f"{path} is not valid JSON ({exc}): replace it with the published file") from None
    by_key = {_norm(k): k for k in table}
    names, descs = [], []
    for folder in classes:
        key = by_key.get(_norm(re.sub(r"^\d+\.", "", folder)))
        if key is None:
            raise FewzeroError(f"class {folder!r} has no entry in {path.name}: add its common name there, "
                               f"or use --set text_source=names")
        names.append(key)
        descs.append([str(d) for d in table[key]])
    return names, descs


def cub_text(classes: Sequence[str], source: str = "both", model: str = DEFAULT_TEXT_MODEL,
             data_root: str | os.PathLike | None = None, progress: bool = False) -> torch.Tensor:
    """Text semantics of CUB class folders: common names and/or descriptions. (len(classes), dim)."""
    if source == "names":
        try:
            names, _ = cub_descriptions(classes, data_root)
        except DataNotFoundError:
            names = [readable_name(c) for c in classes]
        return class_text_semantics(names, None, "names", model, progress)
    names, descs = cub_descriptions(classes, data_root)
    return class_text_semantics(names, descs, source, model, progress)


def cub_text_semantics(classes: Sequence[str], source: str = "both", model: str = DEFAULT_TEXT_MODEL,
                       pooling: str = DEFAULT_TEXT_POOLING, data_root: str | os.PathLike | None = None,
                       progress: bool = False) -> torch.Tensor:
    """Prompt-ensembled text semantics of CUB class folders (``text_class_matrix``). (len(classes), dim)."""
    check_pooling(pooling)
    if source == "names":
        try:
            names, descs = cub_descriptions(classes, data_root)
        except DataNotFoundError:
            names, descs = [readable_name(c) for c in classes], None
    else:
        names, descs = cub_descriptions(classes, data_root)
    embed = lambda texts: text_embeddings(texts, model, progress=progress).numpy()  # noqa: E731
    matrix = torch.from_numpy(text_class_matrix(names, descs, embed, source, pooling)).float()
    return check_semantics(matrix, list(classes))


def cub_semantics(kind: str, class_names: Sequence[str], *, data_root: str | os.PathLike | None = None,
                  text_source: str = "both", text_model: str = DEFAULT_TEXT_MODEL,
                  text_pooling: str = DEFAULT_TEXT_POOLING, progress: bool = False) -> tuple[torch.Tensor, str]:
    """Class semantics of CUB class folders and a one-line description of them for reports.

    Args:
        kind: ``attributes`` (CUB's 312 class attributes, L2-normalised), ``text`` (``cub_text_semantics``) or
            ``attributes+text``: ``[a / sqrt(2), t / sqrt(2)]`` with ``a`` and ``t`` the L2-normalised attribute
            and text rows, so both blocks have norm 1/sqrt(2) and count equally, and every row has unit norm.
        class_names: class folders, e.g. ``["001.Black_footed_Albatross", ...]``; rows follow this order.
        text_source, text_model, text_pooling: the text part (``TEXT_SOURCES``, a sentence-transformers model,
            ``TEXT_POOLINGS``).

    Returns:
        ((len(class_names), dim) float32, description).
    """
    if kind not in SEMANTICS_KINDS:
        raise FewzeroError(f"unknown semantics {kind!r}: choose one of {', '.join(SEMANTICS_KINDS)}")
    check_pooling(text_pooling)
    if text_source not in TEXT_SOURCES:
        raise FewzeroError(f"unknown text source {text_source!r}: choose one of {', '.join(TEXT_SOURCES)}")
    parts, said = [], []
    if kind in ("attributes", "attributes+text"):
        parts.append(cub_attributes(class_names, data_root))
        said.append("CUB class attributes (312, L2-normalised)")
    if kind in ("text", "attributes+text"):
        parts.append(cub_text_semantics(class_names, text_source, text_model, text_pooling, data_root, progress))
        prompts = {"names": f"{len(NAME_TEMPLATES)} name", "descriptions": f"{len(BARE_TEMPLATES)} descriptor",
                   "both": f"{len(NAME_TEMPLATES)} name + {len(DESCRIPTOR_TEMPLATES)} descriptor"}[text_source]
        said.append(f"text: {text_source} (descriptors_cub.json), {text_model}, {prompts} prompt templates, "
                    f"{text_pooling} pooling ({parts[-1].shape[1]})")
    if len(parts) == 1:
        return parts[0], said[0]
    matrix = torch.from_numpy(concat_blocks([p.double().numpy() for p in parts])).float()
    return matrix, f"attributes+text, each block L2-normalised and weighted 1/sqrt(2): {said[0]} + {said[1]}"
