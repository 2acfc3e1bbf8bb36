"""Default checkpoints per (method, dataset): shipped in this folder, else cached, else trained on first use.

A shipped ``<method>_<dataset>.pt`` is produced by ``fewzero train`` with ``configs/<method>_<dataset>.yaml``;
the command that made it is recorded in ``<method>_<dataset>.md`` beside it. Learners whose head is tied to the
number of ways (the MAML family) may also ship ``<method>_<dataset>_<way>way.pt``, used for ``--way <way>``, and
``<method>_<dataset>_<way>way_<shot>shot.pt``, a model meta-trained on ``<shot>``-shot tasks, used for
``--way <way> --shot <shot>`` (the most specific shipped model wins).
"""
from __future__ import annotations

from pathlib import Path

from fewzero.config import RunConfig, load_config
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


def default_checkpoint(config: RunConfig, data_root: str | None = None, progress: bool = True) -> Path:
    """The checkpoint ``fewzero eval`` uses for ``(config.method, config.dataset)`` when none is given."""
    shipped = shipped_checkpoint(config)
    if shipped is not None:
        return shipped
    name = shipped_name(config.method, config.dataset)
    run = user_cache_dir() / "checkpoints" / name
    if (run / "best.pt").is_file() and not (run / "last.pt").is_file():
        return run / "best.pt"
    from fewzero.train import train

    print(f"no checkpoint for {name} yet: training one with the default config into {run} "
          f"(once; later runs reuse it)")
    train(load_config(config.method, config.dataset), run, resume=(run / "last.pt").is_file(),
          data_root=data_root, progress=progress)
    (run / "last.pt").unlink()  # the finished run keeps only best.pt, which marks it complete
    return run / "best.pt"
