"""An Optuna study run to a number of finished trials: storage, sampler, pruner, resume, several processes.

Storage: by default Optuna's journal file ``<out>/study.journal`` (safe for several processes on one machine);
``sqlite:///path.db``, ``postgresql://...`` or ``mysql://...`` URLs use Optuna's RDB storage, through which
processes on many machines share one study (each runs the same ``fewzero tune`` command).

``--trials N`` is the number of finished trials the study should hold: rerunning the same command after an
interruption runs only the missing ones. A trial left running by a killed process is marked failed and its
values are queued again, so it is rerun first (embedded storage: when no other process holds the out folder;
RDB storage: through Optuna's heartbeat).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fewzero.errors import FewzeroError
from fewzero.tune.space import SearchSpace

SAMPLERS = ("tpe", "grid", "random", "cmaes")
PRUNERS = ("median", "hyperband", "none")
JOURNAL = "study.journal"
HOLDER_LOCK = ".tune.lock"  # held by every process working on the study from this machine's out folder
ASK_LOCK = ".tune.ask"  # held while a process counts the trials and asks for one (no overshoot of --trials)
RDB_PREFIXES = ("sqlite:", "postgresql", "mysql", "mariadb", "oracle", "mssql")
HEARTBEAT_SECONDS = 60


@dataclass
class StudySettings:
    """What defines a study run (the CLI's flags)."""

    name: str
    out: Path
    trials: int
    sampler: str = "tpe"
    pruner: str = "median"
    storage: str | None = None
    seed: int = 0
    direction: str = "maximize"

    def storage_url(self) -> str:
        return self.storage or str(self.out / JOURNAL)


def check_settings(settings: StudySettings) -> None:
    """Refuse bad flags before anything is created."""
    if settings.trials < 1:
        raise FewzeroError(f"--trials {settings.trials}: a study needs at least one trial")
    if settings.sampler not in SAMPLERS:
        raise FewzeroError(f"unknown sampler {settings.sampler!r}: choose one of {', '.join(SAMPLERS)}")
    if settings.pruner not in PRUNERS:
        raise FewzeroError(f"unknown pruner {settings.pruner!r}: choose one of {', '.join(PRUNERS)}")
    if not settings.name or not settings.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise FewzeroError(f"--study {settings.name!r}: use letters, digits, '-', '_' or '.'")
    url = settings.storage_url()
    if "://" in url and not url.startswith(RDB_PREFIXES):
        raise FewzeroError(f"storage {url}: give a journal file path or an sqlite:///, postgresql:// or mysql:// URL")


def open_storage(settings: StudySettings):
    """The Optuna storage the settings name; a URL that cannot be opened is a FewzeroError."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    url = settings.storage_url()
    if url.startswith(RDB_PREFIXES):
        try:
            with warnings.catch_warnings():  # Optuna marks its heartbeat experimental
                warnings.simplefilter("ignore")
                return RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=3 * HEARTBEAT_SECONDS,
                                  heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                                      max_retry=1))
        except Exception as exc:  # SQLAlchemy raises many kinds; the message is what the user needs
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FewzeroError(f"cannot open the study storage {url} ({first}): check the URL, that the database "
                               f"server is up and that its driver is installed") from None
    path = Path(url)
    if path.is_dir():
        raise FewzeroError(f"storage {url} is a folder: give a journal file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as exc:
        raise FewzeroError(f"cannot open the study storage {url} ({exc.strerror or exc}): choose another "
                           f"--storage or --out") from None


def trial_seed(seed: int | None, trials_before: int, *, shared_storage: bool = False) -> int | None:
    """The seed of the sampler that proposes a study's next trial: drawn from the study's ``seed`` and how many
    trials the study already holds, so that a resumed study or a second process does not start the random stream
    again and propose the trials it already tried; still reproducible for one process on embedded storage. On an
    RDB storage several machines may ask at once, so their process and host join the seed there."""
    if seed is None:
        return None
    import socket

    import numpy as np

    entropy = [seed, trials_before] + ([os.getpid(), *socket.gethostname().encode()] if shared_storage else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def make_sampler(settings: StudySettings, space: SearchSpace):
    import optuna

    if settings.sampler in ("grid", "random"):  # grid: every point is queued (enqueue_grid), none is sampled
        return optuna.samplers.RandomSampler(seed=settings.seed)
    if settings.sampler == "cmaes":
        if any(param.type == "categorical" for param in space.params):
            raise FewzeroError("--sampler cmaes searches numbers only (categorical keys would be sampled at "
                               "random): use tpe, or fix the categorical keys in the space's fixed:")
        return optuna.samplers.CmaEsSampler(seed=settings.seed, warn_independent_sampling=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Optuna's default of 10 random start-up trials would leave little to TPE in a study of 20 trials
        startup = max(3, min(10, settings.trials // 5))
        return optuna.samplers.TPESampler(seed=settings.seed, multivariate=True, n_startup_trials=startup)


def make_pruner(settings: StudySettings):
    import optuna

    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def enqueue_grid(study, space: SearchSpace) -> int:
    """Queue every distinct grid point once, in file order (a new study only); returns how many were queued.

    Queued points rather than Optuna's ``GridSampler``: a conditional key is left out where it does not apply,
    so no configuration is tried twice, and the order is the same for every run of the study."""
    if study.get_trials(deepcopy=False):
        return 0
    points = space.grid_points()
    for point in points:
        study.enqueue_trial(point)
    return len(points)


def load_study(settings: StudySettings, space: SearchSpace, storage=None):
    """Create the study, or load it when the storage already holds one of that name."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler, pruner = make_sampler(settings, space), make_pruner(settings)  # refused before a file is written
    return optuna.create_study(study_name=settings.name, storage=storage or open_storage(settings),
                               sampler=sampler, pruner=pruner, direction=settings.direction, load_if_exists=True)


def counted(study) -> int:
    """Trials that count towards --trials: finished (complete, pruned, failed) or running, not interrupted ones."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state != TrialState.WAITING and not t.user_attrs.get("interrupted"))


def finished(study) -> int:
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               or (t.state == TrialState.FAIL and not t.user_attrs.get("interrupted")))


def trial_target(settings: StudySettings, space: SearchSpace) -> int:
    """How many trials the study should hold: ``--trials``, at most the grid's distinct points for the grid."""
    return min(settings.trials, len(space.grid_points())) if settings.sampler == "grid" else settings.trials


@contextlib.contextmanager
def _file_lock(path: Path, blocking: bool = True, shared: bool = False):
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def requeue_interrupted(study, settings: StudySettings) -> int:
    """Mark trials left running by a killed process as failed and queue their values again; returns how many.

    Only for embedded storage, and only when no other process on this machine works on the study."""
    from optuna.trial import TrialState

    if settings.storage_url().startswith(RDB_PREFIXES):
        return 0  # RDB storage: Optuna's heartbeat fails and retries stale trials
    with _file_lock(settings.out / HOLDER_LOCK, blocking=False) as alone:
        if not alone:
            return 0
        stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
        for trial in stale:
            _retry(study, trial._trial_id, trial.number, trial.params)
        return len(stale)


def _retry(study, trial_id: int, number: int, params: dict[str, Any]) -> None:
    """Fail an interrupted trial (it does not count towards --trials) and queue its values again."""
    from optuna.trial import TrialState

    study._storage.set_trial_user_attr(trial_id, "interrupted", True)
    study._storage.set_trial_state_values(trial_id, TrialState.FAIL)
    study.enqueue_trial(params, user_attrs={"retry_of": number}, skip_if_exists=False)


def _heartbeat(study, trial):
    """Optuna's heartbeat thread for the trial (RDB storage), as ``study.optimize`` would start it."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    return get_heartbeat_thread(trial._trial_id, study._storage)


def run_trials(study, settings: StudySettings, space: SearchSpace,
               objective: Callable[[Any, dict[str, Any]], float], on_trial: Callable[[Any], None] | None = None
               ) -> None:
    """Ask for trials until the study holds ``settings.trials`` of them (or the grid is exhausted), telling each
    one's value; a ``FewzeroError`` in a trial (e.g. a diverging loss) fails that trial only."""
    import optuna
    from optuna.trial import TrialState

    target = trial_target(settings, space)
    rdb = settings.storage_url().startswith(RDB_PREFIXES)
    # shared: tells requeue_interrupted that a process is at work
    with _file_lock(settings.out / HOLDER_LOCK, shared=True):
        while True:
            with _file_lock(settings.out / ASK_LOCK):
                with warnings.catch_warnings():  # heartbeat with ask/tell: we start its thread ourselves
                    warnings.simplefilter("ignore")
                    if rdb:
                        optuna.storages.fail_stale_trials(study)
                    if counted(study) >= target:
                        return
                    held = len(study.get_trials(deepcopy=False))
                    study.sampler = make_sampler(dataclasses.replace(
                        settings, seed=trial_seed(settings.seed, held, shared_storage=rdb)), space)
                    trial = study.ask()
            trial.set_user_attr("pid", os.getpid())
            try:
                values = space.suggest(trial)
                with _heartbeat(study, trial):
                    value = objective(trial, {**space.budget, **space.fixed, **values})
            except optuna.TrialPruned:
                frozen = study.tell(trial, state=TrialState.PRUNED)
            except FewzeroError as exc:
                trial.set_user_attr("error", str(exc))
                frozen = study.tell(trial, state=TrialState.FAIL)
            except BaseException:  # interrupted (Ctrl-C) or a bug: the trial is tried again on the next run
                _retry(study, trial._trial_id, trial.number, trial.params)
                raise
            else:
                frozen = study.tell(trial, value)
            if on_trial is not None:
                on_trial(frozen)
