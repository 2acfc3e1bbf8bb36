"""``fewzero eval --method eszsl --dataset cub50 --semantics text``: zero-shot evaluation from the command line."""
from __future__ import annotations

import argparse

from fewzero.data.zero_shot import ZeroShotData
from fewzero.errors import FewzeroError
from fewzero.evaluate_zsl import ZeroShotReport, evaluate_zero_shot
from fewzero.registry import ZERO_SHOT

DEFAULT_DATASET = "cub50"
DEFAULT_SEMANTICS = "attributes"


def load_data(dataset: str, semantics: str, data_root: str | None, progress: bool, **options) -> ZeroShotData:
    """The benchmark's ``ZeroShotData`` (``fewzero.zsl.loaders.load_zero_shot``, imported lazily)."""
    from fewzero.zsl.loaders import load_zero_shot

    return load_zero_shot(dataset, semantics=semantics, data_root=data_root, progress=progress, **options)


def run_zero_shot_eval(method: str, dataset: str, semantics: str, data_root: str | None, seed: int, quiet: bool,
                       learner_args: dict, data_args: dict | None = None, curve_path: str | None = None
                       ) -> ZeroShotReport:
    """Load the benchmark, build ``method`` from ``ZERO_SHOT``, fit and evaluate it, print T1, u, s, H.

    Args:
        method: a registered zero-shot learner (dap, eszsl, ale, devise, sje, sae, fclswgan, cvae).
        dataset, semantics, data_root: what to load (``semantics``: attributes or text).
        seed: the learner's seed (unless ``learner_args`` sets one) and the calibration split's.
        quiet: no progress bars.
        learner_args: keyword arguments of the learner (its constructor's names); gcnzsl's ``graph`` may be a
            mapping of ``build_class_graph`` options, built on the loaded data (``resolve_graph``).
        data_args: extra options of the dataset loader.
        curve_path: where to save the seen-unseen curve PNG (not saved when None).
    """
    parameters = ZERO_SHOT.parameters(method)
    unknown = sorted(set(learner_args) - set(parameters))
    if unknown:
        raise FewzeroError(f"{method} has no option {unknown[0]!r}: choose from {', '.join(parameters)}")
    if "seed" in parameters:
        learner_args = {"seed": seed, **learner_args}
    if "progress" in parameters:  # training bars of the generative learners follow --quiet
        learner_args = {"progress": not quiet, **learner_args}
    from fewzero.zsl.graph_settings import resolve_graph

    data = load_data(dataset, semantics, data_root, not quiet, **(data_args or {}))
    learner = ZERO_SHOT.create(method, **resolve_graph(learner_args, data))
    report = evaluate_zero_shot(learner, data, seed=seed, curve_path=curve_path)
    report.info.update(method=method, dataset=dataset, semantics_kind=semantics, seed=seed,
                       learner_args={k: v for k, v in learner_args.items() if v is not None})
    print_report(method, dataset, semantics, report, curve_path)
    return report


def print_report(method: str, dataset: str, semantics: str, report: ZeroShotReport, curve_path: str | None) -> None:
    """T1, u, s, H, calibrated u, s, H and AUSUC (and an ensemble's members) on standard output."""
    print(f"{method} on {dataset} ({semantics} semantics; {report.n_seen} seen, {report.n_unseen} unseen classes)")
    print(f"zero-shot  T1 {report.t1:6.2f} %")
    print(f"generalized    u {report.u:6.2f}  s {report.s:6.2f}  H {report.h:6.2f}")
    print(f"calibrated     u {report.calibrated_u:6.2f}  s {report.calibrated_s:6.2f}  H {report.calibrated_h:6.2f}"
          f"  (gamma {report.gamma:.4g}, chosen on training items only)")
    print(f"AUSUC {report.ausuc:.4f}; {report.seconds:.1f} s" + (f"; curve {curve_path}" if curve_path else ""))
    if report.members:
        print("members' T1: " + ", ".join(f"{name} {t1:.2f}" for name, t1 in report.members.items()))
        names = list(report.members)
        print("pairwise disagreement (% of unseen test items, among unseen classes): " + ", ".join(
            f"{names[i]}/{names[j]} {report.disagreement[i][j]:.1f}"
            for i in range(len(names)) for j in range(i + 1, len(names))))


def read_config(path: str, method: str) -> dict:
    """A zero-shot config (``fewzero tune``'s ``best.yaml``): ``method``, ``dataset``, ``semantics``, ``seed`` and
    the learner's settings under ``learner:``; unknown keys, another method or bad learner settings are errors."""
    from fewzero.config import ZERO_SHOT_CONFIG_KEYS, read_yaml

    values = read_yaml(path)
    unknown = sorted(set(values) - set(ZERO_SHOT_CONFIG_KEYS))
    if unknown:
        raise FewzeroError(f"config file {path}: unknown key {unknown[0]!r} for a zero-shot method: use "
                           f"{', '.join(ZERO_SHOT_CONFIG_KEYS)}")
    if values.get("method", method) != method:
        raise FewzeroError(f"config file {path} is for {values['method']}, not {method}: pass --method "
                           f"{values['method']} or another --config")
    learner = values.get("learner") or {}
    if not isinstance(learner, dict):
        raise FewzeroError(f"config file {path}: learner must be a mapping of {method}'s settings")
    return {**values, "learner": learner, "data": data_options(values, f"config file {path}")}


def data_options(values: dict, where: str) -> dict:
    """The dataset loader's options under a zero-shot config's ``data:`` (e.g. ``{heads: classes+attributes}``)."""
    data = values.get("data") or {}
    if not isinstance(data, dict):
        raise FewzeroError(f"{where}: data must be a mapping of the dataset's options (e.g. heads: classes)")
    return data


def run_settings(args: argparse.Namespace, config: dict) -> tuple[str, str, int, str | None]:
    """(dataset, semantics, seed, curve PNG path or None) of a zero-shot evaluation: the flags, else the config's
    values, else the defaults; the curve goes beside ``--records``."""
    curve = str(args.records).removesuffix(".json") + "_curve.png" if args.records else None
    seed = args.seed if args.seed is not None else int(config.get("seed", 0))
    return (args.dataset or config.get("dataset") or DEFAULT_DATASET,
            args.semantics or config.get("semantics") or DEFAULT_SEMANTICS, seed, curve)


def eval_from_args(args: argparse.Namespace) -> ZeroShotReport:
    """``fewzero eval`` for a zero-shot method: ``--config`` (e.g. ``fewzero tune``'s ``best.yaml``; by default
    ``configs/<method>_<dataset>.yaml`` where one is shipped, e.g. gcnzsl's on cub50) gives the
    dataset, semantics, seed, learner settings and dataset options (``data:``); ``--set key=value`` sets a learner
    option (``learner.key`` or a name the learner takes) or a dataset option (``data.key`` or any other name); flags
    win over the config; ``--records`` saves the report JSON and the seen-unseen curve PNG beside it."""
    from fewzero.config import parse_override, zero_shot_config_path

    parameters = ZERO_SHOT.parameters(args.method)
    path = zero_shot_config_path(args.method, args.dataset or DEFAULT_DATASET, getattr(args, "config", None))
    config = read_config(path, args.method) if path else {"learner": {}}
    learner_args, data_args = dict(config["learner"]), dict(config.get("data") or {})
    for key, value in (parse_override(text) for text in args.set):
        if key.startswith("learner."):
            learner_args[key.split(".", 1)[1]] = value
        elif key.startswith("data."):
            data_args[key.split(".", 1)[1]] = value
        else:
            (learner_args if key in parameters else data_args)[key] = value
    dataset, semantics, seed, curve = run_settings(args, config)
    report = run_zero_shot_eval(args.method, dataset, semantics, args.data_root, seed, args.quiet, learner_args,
                                data_args, curve_path=curve)
    if args.records:
        print(f"report written to {report.save(args.records)}")
    return report
