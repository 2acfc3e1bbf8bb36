"""Default checkpoints per (method, dataset): shipped in this folder, else a finished run in the user cache.

A shipped ``<method>_<dataset>.pt`` is produced by ``fewzero train`` with ``configs/<method>_<dataset>.yaml``;
the command that made it is recorded in ``<method>_<dataset>.md`` beside it. Learners whose head is tied to the
number of ways (the MAML family) may also ship ``<method>_<dataset>_<way>way.pt``, used for ``--way <way>``, and
``<method>_<dataset>_<way>way_<shot>shot.pt``, a model meta-trained on ``<shot>``-shot tasks, used for
``--way <way> --shot <shot>`` (the most specific shipped model wins). The transfer learners (baseline, simpleshot,
...) start from a backbone pretrained by ``fewzero pretrain``, shipped as ``pretrain_<backbone>_<dataset>.pt``.
"""
from __future__ import annotations

from pathlib import Path

from fewzero.config import RunConfig
from fewzero.paths import user_cache_dir
from fewzero.registry import LEARNERS

PACKAGED = Path(__file__).parent


def shipped_name(method: str, dataset: str, way: int | None = None, shot: int | None = None) -> str:
    """The file stem a model ships under: ``<method>_<dataset>[_<way>way[_<shot>shot]]``."""
    if shot is not None and way is None:
        raise ValueError("a per-shot model is also per-way: give way too")
    return (f"{method}_{dataset}" + (f"_{way}way" if way is not None else "")
            + (f"_{shot}shot" if shot is not None else ""))


def pretrained_name(backbone: str, dataset: str) -> str:
    """The file stem of a backbone pretrained by ``fewzero pretrain``: ``pretrain_<backbone>_<dataset>``."""
    return f"pretrain_{backbone}_{dataset}"


def starts_from_pretrained(method: str) -> bool:
    """Whether ``method`` is a transfer learner built on a pretrained backbone (not trained by fewzero train)."""
    return bool(getattr(LEARNERS.get(method), "starts_from_pretrained", False))


def shipped_checkpoint(config: RunConfig) -> Path | None:
    """The most specific checkpoint shipped for ``config``'s method, dataset and test episode shape, if any; for a
    transfer learner, the shipped pretrained backbone ``pretrain_<backbone>_<dataset>.pt``."""
    method, dataset, way, shot = config.method, config.dataset, config.test_way, config.test_shot
    stems = [shipped_name(method, dataset, way, shot), shipped_name(method, dataset, way),
             shipped_name(method, dataset)]
    if starts_from_pretrained(method):
        stems.append(pretrained_name(config.backbone, dataset))
    for stem in stems:
        if (PACKAGED / f"{stem}.pt").is_file():
            return PACKAGED / f"{stem}.pt"
    return None


def cached_run(config: RunConfig) -> Path:
    """The cache folder where ``fewzero eval --train-if-missing`` keeps the model it trains (a transfer learner:
    pretrains) for ``config``."""
    stem = (pretrained_name(config.backbone, config.dataset) if starts_from_pretrained(config.method)
            else shipped_name(config.method, config.dataset))
    return user_cache_dir() / "checkpoints" / stem


def default_checkpoint(config: RunConfig) -> Path | None:
    """The checkpoint ``fewzero eval`` uses when none is given: shipped, else a finished run in the cache, else None.

    A run is finished when its ``metrics.json`` (written at the end of training) is there.
    """
    shipped = shipped_checkpoint(config)
    if shipped is not None:
        return shipped
    run = cached_run(config)
    if (run / "best.pt").is_file() and (run / "metrics.json").is_file():
        return run / "best.pt"
    return None
