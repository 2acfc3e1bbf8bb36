"""Default checkpoints per (method, dataset): shipped in this folder, else cached, else trained on first use.

A shipped ``<method>_<dataset>.pt`` is produced by ``fewzero train`` with ``configs/<method>_<dataset>.yaml``;
the command that made it is recorded in ``<method>_<dataset>.md`` beside it. Learners whose head is tied to the
number of ways (the MAML family) may also ship ``<method>_<dataset>_<way>way.pt``, used for ``--way <way>``.
"""
from __future__ import annotations

from pathlib import Path

from fewzero.config import RunConfig, load_config
from fewzero.paths import user_cache_dir

PACKAGED = Path(__file__).parent


def default_checkpoint(config: RunConfig, data_root: str | None = None, progress: bool = True) -> Path:
    """The checkpoint ``fewzero eval`` uses for ``(config.method, config.dataset)`` when none is given."""
    name = f"{config.method}_{config.dataset}"
    for shipped in (PACKAGED / f"{name}_{config.test_way}way.pt", PACKAGED / f"{name}.pt"):
        if shipped.is_file():
            return shipped
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
