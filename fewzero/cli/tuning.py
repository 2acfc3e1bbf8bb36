"""``fewzero tune``: search a learner's hyper-parameters on validation data with Optuna (``fewzero.tune``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from fewzero.catalogue import method_kind
from fewzero.errors import FewzeroError


def default_space(method: str) -> Path:
    from fewzero.paths import config_dir

    return config_dir() / "spaces" / f"{method}.yaml"


def cmd_tune(args: argparse.Namespace) -> None:
    from fewzero.config import command_line_overrides
    from fewzero.tune import ObjectiveSpec, StudySettings, load_space, tune

    kind = method_kind(args.method)
    if args.method == "ensemble":
        raise FewzeroError("ensemble combines trained members: tune each member, then fit the ensemble's weights "
                           "with fewzero eval --method ensemble")
    few_shot_only = [flag for flag, value in (("--checkpoint", args.checkpoint), ("--episodes", args.episodes),
                                               ("--split", args.split)) if value is not None]
    if kind == "zero-shot" and few_shot_only:
        raise FewzeroError(f"{', '.join(few_shot_only)} does not apply to {args.method} (a zero-shot method): "
                           f"drop it")
    if kind == "few-shot" and args.semantics is not None:
        raise FewzeroError(f"--semantics does not apply to {args.method} (a few-shot method): drop it")
    metrics = ("t1", "h") if kind == "zero-shot" else ("accuracy",)
    if args.metric is not None and args.metric not in metrics:
        raise FewzeroError(f"--metric {args.metric} does not apply to {args.method} (a {kind} method): choose "
                           f"{' or '.join(metrics)}")
    space_path = Path(args.space) if args.space else default_space(args.method)
    if not args.space and not space_path.is_file():
        raise FewzeroError(f"no search space for {args.method} is shipped: write one (see configs/spaces/) and "
                           f"pass --space FILE")
    space = load_space(space_path)
    dataset = args.dataset or ("cub50" if kind == "zero-shot" else "omniglot")
    overrides, origins = command_line_overrides(args.set, {"--split": ("split", args.split)})
    if kind == "zero-shot":
        overrides = {key.removeprefix("learner."): value for key, value in overrides.items()}
    out = Path(args.out or f"runs/tune_{args.method}_{dataset}")
    if out.exists() and not out.is_dir():
        raise FewzeroError(f"--out {out} is a file, not a folder: choose another --out")
    spec = ObjectiveSpec(args.method, kind, dataset=dataset, config_path=args.config, overrides=overrides,
                         origins=origins, data_root=args.data_root, semantics=args.semantics or "attributes",
                         metric=args.metric, seed=args.seed if args.seed is not None else 0,
                         checkpoint=args.checkpoint, episodes=args.episodes, out=str(out))
    settings = StudySettings(name=args.study or f"{args.method}_{dataset}", out=out, trials=args.trials,
                             sampler=args.sampler, pruner=args.pruner, storage=args.storage,
                             seed=args.seed if args.seed is not None else 0)
    summary = tune(spec, space, settings, jobs=args.jobs, progress=not args.quiet)
    best = summary["best"]
    states = ", ".join(f"{count} {state}" for state, count in summary["trials"].items())
    print(f"study {settings.name!r} ({settings.storage_url()}): {states}")
    if best is None:
        print("no trial completed: see trials.csv for the errors")
        return
    params = ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                       for key, value in best["params"].items())
    print(f"best: trial {best['number']}, validation {summary['metric']} {best['value']:.2f} ({params})")
    how = (f"fewzero train --method {args.method} --config {out / 'best.yaml'}" if kind == "few-shot"
           and summary["kind"] == "few-shot" and not _starts_from_pretrained(args.method)
           else f"fewzero eval --method {args.method} --config {out / 'best.yaml'}")
    print(f"wrote {out / 'best.yaml'} ({how}), {out / 'trials.csv'}, plots in {out}")


def _starts_from_pretrained(method: str) -> bool:
    from fewzero.pretrained import starts_from_pretrained

    return starts_from_pretrained(method)
