"""What ``fewzero train`` and ``fewzero pretrain`` do before their first step, in one process or many.

``plan_run`` decides the config and the folder mode (new, resumed, replaced), including after torchrun's elastic
agent restarted the group; ``joined_run`` joins the process group, lets process 0 take the run folder and checks
that every process was given the same config; ``restored_progress`` restores a ``last.pt``'s counters.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from fewzero import distributed
from fewzero.checkpoint import PRETRAINED_KIND, load_checkpoint, saved_config
from fewzero.config import RunConfig, check_device, validate
from fewzero.errors import FewzeroError
from fewzero.precision import resolve_precision
from fewzero.run_folder import RESUMABLE_KEYS, RunFolder, require_last_checkpoint


def resumed_config(last_path: Path, changes: dict[str, Any], method: str | None, kind: str | None = None
                   ) -> RunConfig:
    """The config saved in ``last_path`` with ``changes`` (only RESUMABLE_KEYS) applied; ``method`` must match,
    and the run must be of ``kind`` (None: a ``fewzero train`` run; ``PRETRAINED_KIND``: a pretraining)."""
    unknown = sorted(set(changes) - set(RESUMABLE_KEYS))
    if unknown:
        raise FewzeroError(f"a resumed run keeps its saved config; {', '.join(unknown)} cannot change (only "
                           f"{', '.join(RESUMABLE_KEYS)} can): drop them, or start a new run with --out elsewhere")
    payload = load_checkpoint(last_path)
    if payload.get("kind") != kind:
        held, other = (("a pretraining", "fewzero pretrain --resume") if payload.get("kind") == PRETRAINED_KIND
                       else ("a fewzero train run", "fewzero train --resume"))
        raise FewzeroError(f"{last_path.parent} holds {held}: continue it with {other}")
    saved = saved_config(payload, last_path)
    if method is not None and saved.get("method") != method:
        raise FewzeroError(f"{last_path.parent} holds a {saved.get('method')} run, not {method}: "
                           f"pass --method {saved.get('method')}")
    return validate({**saved, **changes}, f" of {last_path}")


def _run_identity(config: RunConfig) -> str:
    """The hash of what defines a run: its config less the keys a resumed run may change."""
    return distributed.config_hash({k: v for k, v in config.to_dict().items() if k not in RESUMABLE_KEYS})


def plan_run(config: RunConfig | None, out: Path, *, resume: bool, overwrite: bool, changes: dict[str, Any],
             method: str | None = None, kind: str | None = None) -> tuple[RunConfig, bool, bool]:
    """``(config, resume, overwrite)`` of a run about to start in ``out``.

    A resumed run takes its saved config; a config given beside it must be the same run (its hash, less the
    RESUMABLE_KEYS, must match). When torchrun restarted the group (``TORCHELASTIC_RESTART_COUNT > 0``) the same
    command continues from ``last.pt`` if there is one, and otherwise starts again from scratch.
    """
    last = out / "last.pt"
    if config is not None:  # the run records the arithmetic it used (and a resume on another machine keeps it)
        config.precision = resolve_precision(config.precision, config.device)
    if not resume and config is not None and distributed.restart_count() > 0:
        if not last.is_file():
            return config, False, True
        resume, overwrite = True, False
        changes = {key: getattr(config, key) for key in RESUMABLE_KEYS}  # the command's, as a resume would take them
    if resume:
        require_last_checkpoint(out)
        saved = resumed_config(last, changes, method, kind)
        if config is not None and _run_identity(config) != _run_identity(saved):
            raise FewzeroError(f"{out} holds a run with another config (hash {_run_identity(saved)}, the config "
                               f"given has {_run_identity(config)}): continue it with its saved config "
                               f"(`--resume` alone), or start a new run with another --out")
        config = saved
    elif config is None:
        raise FewzeroError("a config is needed unless the run is resumed")
    elif changes:
        raise FewzeroError("changes apply to a resumed run only: put them in the config")
    check_device(config.device, require_available=True)
    return config, resume, overwrite


@contextlib.contextmanager
def joined_run(config: RunConfig, out: Path, *, resume: bool, overwrite: bool) -> Iterator[torch.device]:
    """Join the process group (under torchrun), let process 0 hold the run folder, check that every process has
    the same config; yields this process's device. Outside torchrun: just the run folder."""
    with distributed.process_group(config.device, config.dist_backend) as device, contextlib.ExitStack() as stack:
        rank, _ = distributed.rank_and_world()
        distributed.agreed(lambda: stack.enter_context(RunFolder(out, resume=resume, overwrite=overwrite))
                           if rank == 0 else None)
        distributed.check_same_config(config.to_dict())
        yield torch.device(device)


def restored_progress(state: dict[str, Any], counter: str, changes: dict[str, Any]) -> tuple:
    """Restore the random state of a ``last.pt`` and return its ``(start, best, history, seconds, resumes)``, this
    resume appended to ``resumes``; ``counter`` is what the run counts (``episode``, ``epoch``)."""
    torch.set_rng_state(state["rng"])
    resumes = [*state.get("resumes", []), {counter: state[counter], "changes": changes,
                                           "restart": distributed.restart_count(),
                                           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}]
    return state[counter], state["best"], state["history"], state["seconds"], resumes


def load_resumed_state(out: Path, resume: bool) -> dict[str, Any] | None:
    """The ``last.pt`` of a resumed run, read by process 0 and sent to the others (whose disk may not hold it)."""
    if not resume:
        return None
    rank, _ = distributed.rank_and_world()
    return distributed.broadcast_object(load_checkpoint(out / "last.pt") if rank == 0 else None)
