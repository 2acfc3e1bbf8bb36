"""``tune``: check everything, then run a study in this process or in ``jobs`` processes, then write its outputs.

Nothing is created before the method, the space, the flags and the storage URL have been checked, so bad input
leaves no study folder behind.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fewzero.atomic import make_folders, remove_empty_folders
from fewzero.errors import FewzeroError
from fewzero.tune.space import SearchSpace, level_along
from fewzero.tune.study import (RDB_PREFIXES, StudySettings, check_settings, counted, enqueue_grid, finished,
                                load_study, make_sampler, open_storage, requeue_interrupted, run_trials,
                                trial_target)


@dataclass
class ObjectiveSpec:
    """How to build a study's objective in any process (picklable): the CLI's method, data and config flags."""

    method: str
    kind: str  # few-shot or zero-shot
    dataset: str | None = None
    config_path: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    data_root: str | None = None
    semantics: str = "attributes"
    metric: str | None = None
    seed: int = 0
    checkpoint: str | None = None
    episodes: int | None = None
    out: str = "."

    def keys(self) -> dict[str, None]:
        """The keys a space may set (the few-shot config is loaded, so a bad --config or --set fails here)."""
        from fewzero.tune.objectives import searchable_keys

        if self.kind == "zero-shot":
            return searchable_keys(self.method, self.kind)
        from fewzero.config import load_config

        config = load_config(self.method, self.dataset, self.config_path, self.overrides, self.origins)
        return searchable_keys(self.method, self.kind, config.backbone_args)

    def build(self, progress: bool = False):
        """The objective (``fewzero.tune.objectives``); loads the data it needs (validation data only)."""
        from fewzero.tune import objectives

        if self.kind == "zero-shot":
            from fewzero.config import read_yaml, zero_shot_config_path
            from fewzero.zsl.loaders import load_zero_shot, tuning_options

            dataset = self.dataset or "cub50"
            path = zero_shot_config_path(self.method, dataset, self.config_path)  # what fewzero eval reads
            values = read_yaml(path) if path else {}
            data_options = values.get("data") or {}  # the features best.yaml names: fewzero eval's
            data = load_zero_shot(dataset, semantics=self.semantics, data_root=self.data_root, progress=progress,
                                  **tuning_options(dataset, data_options))
            return objectives.ZeroShotObjective(self.method, data, metric=self.metric or "t1", seed=self.seed,
                                                base={**values.get("learner", {}), **self.overrides},
                                                dataset=dataset, semantics=self.semantics,
                                                data_options=data_options)
        if self.metric not in (None, "accuracy"):
            raise FewzeroError(f"--metric {self.metric} does not apply to few-shot learners: use accuracy")
        config_args = dict(dataset=self.dataset, config_path=self.config_path, overrides=self.overrides,
                           origins=self.origins)
        from fewzero.pretrained import default_checkpoint, starts_from_pretrained

        if not starts_from_pretrained(self.method):
            return objectives.FewShotTrainObjective(self.method, out=self.out, data_root=self.data_root,
                                                    **config_args)
        from fewzero.config import load_config
        from fewzero.train import load_split

        config = load_config(self.method, self.dataset, self.config_path, self.overrides, self.origins)
        checkpoint = self.checkpoint or default_checkpoint(config)
        if checkpoint is None:
            raise FewzeroError(f"no pretrained {config.backbone} for {config.dataset}: run `fewzero pretrain "
                               f"--dataset {config.dataset}` or pass --checkpoint")
        if not Path(checkpoint).is_file():
            raise FewzeroError(f"--checkpoint {checkpoint} does not exist: check the path")
        val_set = load_split(config, config.val_subset, self.data_root, progress=progress)
        return objectives.FewShotFitObjective(self.method, checkpoint=checkpoint, val_set=val_set,
                                              episodes=self.episodes, device=config.device, **config_args)


def space_fingerprint(space: SearchSpace) -> str:
    text = json.dumps([[p.name, p.type, p.low, p.high, p.log, p.step, list(p.choices), list(p.grid), p.when]
                       for p in space.params] + [space.budget, space.fixed], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_same_study(study, identity: dict[str, Any], settings: StudySettings) -> None:
    saved = study.user_attrs.get("fewzero")
    if saved is None:
        study.set_user_attr("fewzero", identity)
        return
    changed = sorted(key for key in identity if saved.get(key) != identity[key])
    if changed:
        raise FewzeroError(f"study {settings.name!r} in {settings.storage_url()} was run with another "
                           f"{', '.join(changed)} ({', '.join(f'{saved.get(k)!r}' for k in changed)}): rerun it "
                           f"as it was, or choose another --study or --out")


def check_space(space: SearchSpace, keys: dict[str, None], method: str) -> None:
    """Every key the space sets is a setting of ``method``, and the space is for ``method``."""
    if space.method is not None and space.method != method:
        raise FewzeroError(f"space file {space.source} is for {space.method}, not {method}: pass "
                           f"--space configs/spaces/{method}.yaml")
    for section, values in (("params", {p.name: 1 for p in space.params}), ("budget", space.budget),
                            ("fixed", space.fixed)):
        unknown = sorted(set(values) - set(keys))
        if unknown:
            raise FewzeroError(f"space file {space.source} ({section}): {unknown[0]!r} is not a setting of "
                               f"{method}: choose from {', '.join(sorted(keys))}")


def _worker(spec: ObjectiveSpec, space: SearchSpace, settings: StudySettings, threads: int, index: int) -> None:
    """One of ``jobs`` processes: build the objective, work on the shared study until it holds enough trials.

    Each process seeds its sampler differently (the same seed would make them propose the same values)."""
    import dataclasses

    import torch

    torch.set_num_threads(threads)
    settings = dataclasses.replace(settings, seed=settings.seed + 7919 * (index + 1))
    try:
        objective = spec.build()
        run_trials(load_study(settings, space), settings, space, objective)
    except FewzeroError as exc:
        print(f"fewzero: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def tune(spec: ObjectiveSpec | None, space: SearchSpace, settings: StudySettings, *, jobs: int = 1,
         objective=None, progress: bool = True, plots: bool = True) -> dict[str, Any]:
    """Run the study to ``settings.trials`` trials and write ``best.yaml``, ``trials.csv``, ``summary.json`` and
    plots into ``settings.out``; returns the summary.

    Args:
        spec: how each process builds the objective (needed for ``jobs > 1``).
        space: the validated search space.
        settings: study name, output folder, trials, sampler, pruner, storage.
        jobs: processes working on the study at once.
        objective: an objective already built (``jobs == 1`` only); default ``spec.build()``.
        plots: draw Optuna's plots (a few seconds).
    """
    from tqdm import tqdm

    from fewzero.tune.outputs import best_trial, write_best_yaml, write_plots, write_summary, write_trials_csv

    if importlib.util.find_spec("optuna") is None:
        raise FewzeroError("fewzero tune runs on Optuna, which is not installed: pip install 'fewzero[tune]'")
    check_settings(settings)
    if jobs < 1:
        raise FewzeroError(f"--jobs {jobs}: give at least 1")
    method = objective.method if objective is not None else spec.method
    check_space(space, objective.keys() if objective is not None else spec.keys(), method)
    make_sampler(settings, space)  # a sampler that cannot search this space is refused before any work
    storage = open_storage(settings) if settings.storage_url().startswith(RDB_PREFIXES) else None
    if objective is None:
        objective = spec.build(progress=progress)
    created = make_folders(settings.out)
    try:
        study = load_study(settings, space, storage)
    except BaseException:
        remove_empty_folders(created)
        raise
    identity = {"method": objective.method, "kind": objective.kind, "metric": objective.metric,
                "sampler": settings.sampler, "space": space_fingerprint(space)}
    _check_same_study(study, identity, settings)
    if settings.sampler == "grid":
        enqueue_grid(study, space)
    requeued = requeue_interrupted(study, settings)
    started = time.perf_counter()
    target = trial_target(settings, space)
    bar = tqdm(total=target, initial=min(finished(study), target), desc=f"tuning {objective.method}", unit="trial",
               disable=not progress, dynamic_ncols=True)

    def show(_trial=None) -> None:
        bar.n = min(finished(study), target)
        best = best_trial(study)
        if best is not None:
            bar.set_postfix(best=f"{best.value:.2f}", refresh=False)
        bar.refresh()

    if requeued and progress:
        print(f"{requeued} interrupted trial(s) queued again", file=sys.stderr)
    if jobs == 1:
        run_trials(study, settings, space, objective, on_trial=show)
    else:
        _run_processes(spec, space, settings, jobs, show)
    bar.close()
    best = best_trial(study)
    summary = {"study": settings.name, "storage": settings.storage_url(), "method": objective.method,
               "kind": objective.kind, "metric": objective.metric, "sampler": settings.sampler,
               "pruner": settings.pruner, "seed": settings.seed, "jobs": jobs, "trials_target": target,
               "trials_counted": counted(study), "trials": _states(study),
               "best": None if best is None else {"number": best.number, "value": best.value, "params": best.params},
               "wall_seconds": round(time.perf_counter() - started, 2), "space": space.source}
    write_trials_csv(study, settings.out / "trials.csv")
    summary["best_at_edge"] = [] if best is None else space.at_edge(best.params)
    complete = [(t.params, t.value) for t in study.get_trials(deepcopy=False)
                if t.state.name == "COMPLETE"] if summary["best_at_edge"] else []
    for edge in summary["best_at_edge"]:
        edge["level_trials"] = level_along(edge["name"], best.params, best.value, complete)
        advice = (f"{edge['level_trials']} trial(s) with another {edge['name']} and the same other values score the "
                  "same, so the score is level there and a wider range is unlikely to help" if edge["level_trials"]
                  else f"the best may lie beyond it; widen the range in {space.source}")
        print(f"fewzero: note: the best trial's {edge['name']}={edge['value']:.4g} sits at the {edge['end']} end of "
              f"its range [{edge['low']:g}, {edge['high']:g}]: {advice}", file=sys.stderr)
    if best is not None:
        header = [f"fewzero tune: study {settings.name!r}, best of {counted(study)} trials: trial {best.number}, "
                  f"validation {objective.metric} {best.value:.4g}",
                  f"space {space.source}; sampler {settings.sampler}, pruner {settings.pruner}, seed {settings.seed}"]
        if space.budget:
            header.append("trials ran with the space's budget (not kept here): "
                          + ", ".join(f"{k}={v}" for k, v in space.budget.items()))
        write_best_yaml(settings.out / "best.yaml", objective.best_config(best.params, space.fixed), header)
    summary["plots_skipped"] = write_plots(study, settings.out) if best is not None and plots else {}
    write_summary(settings.out, summary)
    return summary


def _states(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return counts


def _run_processes(spec: ObjectiveSpec, space: SearchSpace, settings: StudySettings, jobs: int, show) -> None:
    if spec is None:
        raise FewzeroError("jobs > 1 needs an ObjectiveSpec that each process can build its objective from")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(spec, space, settings, threads, index)) for index in range(jobs)]
    for worker in workers:
        worker.start()
    try:
        while any(worker.is_alive() for worker in workers):
            time.sleep(0.5)
            show()
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()
    failed = [worker.exitcode for worker in workers if worker.exitcode]
    if failed:
        raise FewzeroError(f"{len(failed)} of {jobs} tuning processes failed (exit {failed[0]}): see the message "
                           f"above; rerun the same command to resume the study")
