"""Default checkpoints per (method, dataset): shipped in this folder, else a finished run in the user cache.

A shipped ``<method>_<dataset>.pt`` is produced by ``fewzero train`` with ``configs/<method>_<dataset>.yaml``;
the command that made it is recorded in ``<method>_<dataset>.md`` beside it. Learners whose head is tied to the
number of ways (the MAML family) may also ship ``<method>_<dataset>_<way>way.pt``, used for ``--way <way>``, and
``<method>_<dataset>_<way>way_<shot>shot.pt``, a model meta-trained on ``<shot>``-shot tasks, used for
``--way <way> --shot <shot>`` (the most specific shipped model wins).
"""
from __future__ import annotations

from pathlib import Path

from fewzero.config import RunConfig
from fewzero.paths import user_cache_dir

PACKAGED = Path(__file__).parent


def shipped_name(method: str, dataset: str, way: int | None = None, shot: int | None = None) -> str:
    """The file stem a model ships under: ``<method>_<dataset>[_<way>way[_<shot>shot]]``."""
    if shot is not None and way is None:
        raise ValueError("a per-shot model is also per-way: give way too")
    return (f"{method}_{dataset}" + (f"_{way}way" if way is not None else "")
            + (f"_{shot}shot" if shot is not None else ""))


def shipped_checkpoint(config: RunConfig) -> Path | None:
    """The most specific checkpoint shipped for ``config``'s method, dataset and test episode shape, if any."""
    method, dataset, way, shot = config.method, config.dataset, config.test_way, config.test_shot
    for stem in (shipped_name(method, dataset, way, shot), shipped_name(method, dataset, way),
                 shipped_name(method, dataset)):
        if (PACKAGED / f"{stem}.pt").is_file():
            return PACKAGED / f"{stem}.pt"
    return None


def cached_run(config: RunConfig) -> Path:
    """The cache folder where ``fewzero eval --train-if-missing`` keeps the model it trains for ``config``."""
    return user_cache_dir() / "checkpoints" / shipped_name(config.method, config.dataset)


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
