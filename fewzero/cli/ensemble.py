"""``fewzero eval --method ensemble --config FILE``: the members listed in the config decide the kind (few-shot or
zero-shot); the combiner is fitted on validation data, then the shared evaluator of that kind reports."""
from __future__ import annotations

import argparse

from fewzero.cli.eval_flags import FEW_SHOT_EVAL_KEYS, overrides_of, refuse_foreign_flags
from fewzero.errors import FewzeroError

def _config_values(args: argparse.Namespace) -> dict:
    from fewzero.config import read_yaml

    if not args.config:
        raise FewzeroError("an ensemble needs --config FILE listing its members under learner.members (see "
                           "configs/ensemble_omniglot_20way.yaml and configs/ensemble_cub50.yaml)")
    return read_yaml(args.config)


def eval_ensemble(args: argparse.Namespace) -> None:
    from fewzero.ensemble_setup import ensemble_kind

    values = _config_values(args)
    kind = ensemble_kind(values.get("learner"), f" in {args.config}")
    refuse_foreign_flags(args, kind, allowed=("config",))
    for flag in ("checkpoint", "train_if_missing", "batch_norm"):
        if getattr(args, flag, None) is not None:
            raise FewzeroError(f"--{flag.replace('_', '-')} does not apply to an ensemble: set each member's "
                               f"checkpoint and settings in {args.config}")
    if args.records:
        from fewzero.cli.outputs import check_writable_file

        check_writable_file(args.records, "--records")
    if kind == "zero-shot":
        _eval_zero_shot(args, values)
    else:
        _eval_few_shot(args)


def _eval_few_shot(args: argparse.Namespace) -> None:
    from fewzero.config import check_device, load_config
    from fewzero.ensemble_setup import few_shot_ensemble
    from fewzero.evaluate import evaluate
    from fewzero.train import episode_sampler, load_split

    overrides, origins = overrides_of(args, FEW_SHOT_EVAL_KEYS)
    config = load_config("ensemble", args.dataset, args.config, overrides, origins)
    check_device(config.device, require_available=True)
    ensemble, config, info = few_shot_ensemble(config, args.data_root, progress=not args.quiet,
                                               device=config.device)
    print(f"ensemble of {', '.join(ensemble.names)} on {config.dataset}: combiner fitted on "
          f"{info['validation']['episodes']} {config.val_subset} episodes (seed {info['validation']['seed']})")
    print(ensemble.describe())
    dataset = load_split(config, config.test_subset, args.data_root, progress=not args.quiet)
    sampler = episode_sampler(dataset, config, config.test_episodes, config.test_seed)
    report = evaluate(ensemble, dataset, sampler, config.device, progress=not args.quiet)
    print(f"ensemble on {config.dataset} ({config.split} {config.test_subset})")
    print(report)
    if args.records:
        print(f"records written to {report.save(args.records)}")


def _eval_zero_shot(args: argparse.Namespace, values: dict) -> None:
    from fewzero.cli.zero_shot import data_options, load_data, print_report, run_settings
    from fewzero.ensemble_setup import zero_shot_ensemble
    from fewzero.evaluate_zsl import evaluate_zero_shot

    if args.set:
        raise FewzeroError("--set does not apply to a zero-shot ensemble: edit its config file")
    dataset, semantics, seed, curve = run_settings(args, values)
    data = load_data(dataset, semantics, args.data_root, not args.quiet,
                     **data_options(values, f"config file {args.config}"))
    ensemble = zero_shot_ensemble(values, f" in {args.config}", seed=seed, progress=not args.quiet, data=data)
    report = evaluate_zero_shot(ensemble, data, seed=seed, curve_path=curve)
    report.info.update(method="ensemble", dataset=dataset, semantics_kind=semantics, seed=seed,
                       combiner=ensemble.describe())
    print_report("ensemble", dataset, semantics, report, curve)
    print(ensemble.describe() + " (fitted on held-out seen classes)")
    if args.records:
        print(f"report written to {report.save(args.records)}")
