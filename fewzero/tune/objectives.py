"""What a trial scores: validation accuracy only, never a test item.

- ``ZeroShotObjective``: a zero-shot learner fitted on the seen classes minus the validation classes and scored on
  the validation classes (``fewzero.zsl.splits.validation_problem``): T1 or H.
- ``FewShotFitObjective``: a learner that starts from a pretrained backbone (no training), scored on fixed
  validation episodes; the running accuracy is reported after each chunk of episodes, so a pruner can stop it.
- ``FewShotTrainObjective``: ``fewzero.train.train`` on the trial's config; each validation is reported, so a
  pruner can stop a bad training run early.

Each objective knows the keys a space may set (``keys``), turns a trial's values into a config (``config_for``),
and writes the ``best.yaml`` mapping (``best_config``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fewzero.config import FIELDS, NESTED, RunConfig, load_config
from fewzero.errors import FewzeroError
from fewzero.registry import LEARNERS, ZERO_SHOT

ZERO_SHOT_METRICS = ("t1", "h")
# learner arguments a space never sets: the backbone object, and run plumbing
NOT_SEARCHABLE = ("backbone", "progress", "seed")


def searchable_keys(method: str, kind: str, backbone_args: dict | None = None) -> dict[str, None]:
    """The keys a space may set for ``method``: a zero-shot learner's arguments (bare or ``learner.*``); for a
    few-shot learner the config's keys, ``learner.*`` and the config's ``backbone_args.*``."""
    if kind == "zero-shot":
        names = [name for name in ZERO_SHOT.parameters(method) if name not in NOT_SEARCHABLE]
        return {**{name: None for name in names}, **{f"learner.{name}": None for name in names}}
    learner = [name for name in LEARNERS.parameters(method) if name not in NOT_SEARCHABLE]
    return {**{name: None for name in FIELDS if name not in NESTED and name not in ("method", "dataset")},
            **{f"learner.{name}": None for name in learner},
            **{f"backbone_args.{name}": None for name in backbone_args or {}}}


def _pruned() -> Exception:
    import optuna

    return optuna.TrialPruned()


class ZeroShotObjective:
    """Validation T1 (or H) of a zero-shot learner; ``data`` is the benchmark, of which only training items are read.

    Args:
        method: a registered zero-shot learner.
        data: a ``ZeroShotData``; ``validation_problem(data, seed)`` is built once.
        metric: ``t1`` (zero-shot accuracy on the validation classes) or ``h`` (generalized harmonic mean).
        seed: the learner's seed (when it takes one) and the validation split's.
        base: learner settings every trial starts from (a config's ``learner:`` mapping; a gcnzsl ``graph``
            mapping is built on ``data``).
        data_options: the dataset loader's options ``data`` was loaded with (a config's ``data:``), written into
            ``best.yaml`` so that ``fewzero eval --config best.yaml`` scores the features the study tuned on.
    """

    kind = "zero-shot"

    def __init__(self, method: str, data, *, metric: str = "t1", seed: int = 0, base: dict | None = None,
                 dataset: str = "", semantics: str = "", data_options: dict | None = None):
        from fewzero.zsl.graph_settings import resolve_graph
        from fewzero.zsl.splits import validation_problem

        if metric not in ZERO_SHOT_METRICS:
            raise FewzeroError(f"--metric {metric} does not apply to zero-shot learners: choose t1 or h")
        self.method, self.metric, self.seed = method, metric, seed
        self.base, self.dataset, self.semantics = dict(base or {}), dataset, semantics
        self.data_options = dict(data_options or {})
        self.parameters = ZERO_SHOT.parameters(method)
        self.problem = validation_problem(data, seed)
        self.graph = resolve_graph(self.base, data).get("graph")  # a gcnzsl graph named in the base settings

    def keys(self) -> dict[str, Any]:
        return searchable_keys(self.method, self.kind)

    def learner_args(self, values: dict[str, Any]) -> dict[str, Any]:
        args = {**self.base, **{key.removeprefix("learner."): value for key, value in values.items()}}
        if self.graph is not None:
            args["graph"] = self.graph
        if "seed" in self.parameters:
            args.setdefault("seed", self.seed)
        if "progress" in self.parameters:
            args["progress"] = False
        return args

    def __call__(self, trial, values: dict[str, Any]) -> float:
        from fewzero.evaluate_zsl import evaluate_zero_shot

        learner = ZERO_SHOT.create(self.method, **self.learner_args(values))
        report = evaluate_zero_shot(learner, self.problem, seed=self.seed, calibrate=False)
        return float(report.t1 if self.metric == "t1" else report.h)

    def best_config(self, values: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
        learner = {key.removeprefix("learner."): value for key, value in {**self.base, **fixed, **values}.items()}
        return {"method": self.method, "dataset": self.dataset, "semantics": self.semantics, "seed": self.seed,
                **({"data": self.data_options} if self.data_options else {}), "learner": learner}


class _FewShot:
    """What both few-shot objectives share: the keys of ``RunConfig`` and of the learner, and the config."""

    kind = "few-shot"
    metric = "accuracy"

    def __init__(self, method: str, *, dataset: str | None = None, config_path: str | Path | None = None,
                 overrides: dict[str, Any] | None = None, origins: dict[str, str] | None = None):
        self.method, self.dataset, self.config_path = method, dataset, config_path
        self.overrides, self.origins = dict(overrides or {}), dict(origins or {})
        self.base = load_config(method, dataset, config_path, self.overrides, self.origins)

    def keys(self) -> dict[str, Any]:
        return searchable_keys(self.method, self.kind, self.base.backbone_args)

    def config_for(self, values: dict[str, Any], where: str = "the trial") -> RunConfig:
        """The base config with ``values`` (config keys, ``learner.*``) on top."""
        overrides = {**self.overrides, **values}
        origins = {**self.origins, **{key: where for key in values}}
        return load_config(self.method, self.dataset, self.config_path, overrides, origins)

    def best_config(self, values: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
        """The whole config of the best values (every key written: the file loads to exactly this config)."""
        return self.config_for({**fixed, **values}).to_dict()


class FewShotFitObjective(_FewShot):
    """Validation accuracy of a learner built on a pretrained backbone (``checkpoint``), on fixed episodes.

    ``val_set`` is the validation subset (``config.val_subset``); ``episodes`` of ``config.test_way`` /
    ``test_shot`` / ``test_query`` drawn with ``config.test_seed``, scored in ``chunks`` reported one by one.
    """

    def __init__(self, method: str, *, checkpoint: str | Path, val_set, episodes: int | None = None,
                 chunks: int = 4, device: str = "cpu", **config_args):
        super().__init__(method, **config_args)
        self.checkpoint, self.val_set, self.device = Path(checkpoint), val_set, device
        self.episodes = episodes or self.base.val_episodes
        self.chunks = max(1, min(chunks, self.episodes))

    def __call__(self, trial, values: dict[str, Any]) -> float:
        from fewzero.checkpoint import learner_from_checkpoint
        from fewzero.evaluate import evaluate
        from fewzero.sampling import EpisodeSampler

        config = self.config_for(values)
        learner = learner_from_checkpoint(self.checkpoint, method=self.method, dataset=config.dataset,
                                          learner_settings=config.learner)[0].to(self.device)
        bounds = [round(k * self.episodes / self.chunks) for k in range(self.chunks + 1)]
        accuracies: list[float] = []
        for step, (start, stop) in enumerate(zip(bounds, bounds[1:])):
            sampler = EpisodeSampler(self.val_set.labels, config.test_way, config.test_shot, config.test_query,
                                     stop, seed=config.test_seed, start=start,
                                     class_names=getattr(self.val_set, "class_names", None))
            report = evaluate(learner, self.val_set, sampler, self.device, progress=False)
            accuracies += [record["accuracy"] for record in report.records]
            running = sum(accuracies) / len(accuracies)
            if trial is not None and stop < self.episodes:
                trial.report(running, step)
                if trial.should_prune():
                    raise _pruned()
        return sum(accuracies) / len(accuracies)


class FewShotTrainObjective(_FewShot):
    """Best validation accuracy of a ``fewzero train`` run of the trial's config, in ``out/trials/<number>``.

    ``budget`` (config keys, e.g. a short ``episodes``) applies to the trials only, not to ``best.yaml``.
    """

    def __init__(self, method: str, *, out: str | Path, data_root: str | None = None, **config_args):
        super().__init__(method, **config_args)
        self.out, self.data_root = Path(out), data_root
        if not getattr(LEARNERS.get(method), "meta_trainable", True):
            raise FewzeroError(f"{method} is not trained by fewzero train: tune it with a pretrained backbone")

    def __call__(self, trial, values: dict[str, Any]) -> float:
        from fewzero.train import train

        config = self.config_for(values)

        def report(episode: int, accuracy: float) -> None:
            if trial is not None:
                trial.report(accuracy, episode)
                if trial.should_prune():
                    raise _pruned()

        number = trial.number if trial is not None else 0
        metrics = train(config, self.out / "trials" / f"{number:04d}", overwrite=True, data_root=self.data_root,
                        progress=False, on_validation=report)
        return float(metrics["best_val_accuracy"])
