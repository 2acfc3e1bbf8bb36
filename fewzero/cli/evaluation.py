"""``fewzero eval``: resolve the method's kind once, refuse flags of the other kind, hand over to its evaluator."""
from __future__ import annotations

import argparse
from pathlib import Path

from fewzero.catalogue import method_kind
from fewzero.cli.eval_flags import overrides_of as _overrides
from fewzero.cli.eval_flags import FEW_SHOT_EVAL_KEYS, refuse_foreign_flags
from fewzero.cli.outputs import check_writable_file
from fewzero.errors import FewzeroError


def cmd_eval(args: argparse.Namespace) -> None:
    if args.method == "ensemble":  # its kind is its members': read from its config
        from fewzero.cli.ensemble import eval_ensemble

        return eval_ensemble(args)
    kind = method_kind(args.method)
    refuse_foreign_flags(args, kind, allowed=("config",))  # a zero-shot config: fewzero tune's best.yaml
    if args.records:
        check_writable_file(args.records, "--records")
    if kind == "zero-shot":
        from fewzero.cli.zero_shot import eval_from_args

        eval_from_args(args)
    else:
        eval_few_shot(args)


def _checkpoint_for(args: argparse.Namespace, config, set_values: tuple[dict, dict]) -> Path:
    """``--checkpoint``, else the packaged or cached model, else (with ``--train-if-missing``) a new one, trained
    with the method's config (``--config``) and the ``--set`` values."""
    from fewzero.pretrained import cached_run, default_checkpoint

    if args.checkpoint:
        return Path(args.checkpoint)
    found = default_checkpoint(config)
    if found is not None:
        return found
    run = cached_run(config)
    if not args.train_if_missing:
        from fewzero.pretrained import starts_from_pretrained

        command = (f"fewzero pretrain --backbone {config.backbone} --dataset {config.dataset} --out {run}"
                   if starts_from_pretrained(config.method)
                   else f"fewzero train --method {config.method} --dataset {config.dataset} --out {run}")
        raise FewzeroError(f"no trained {config.method} model for {config.dataset} is packaged or cached: run "
                           f"`{command}` (or pass --train-if-missing, or --checkpoint)")
    from fewzero.config import load_config
    from fewzero.pretrained import starts_from_pretrained

    if starts_from_pretrained(config.method):
        from fewzero.pretrain import pretrain, pretrain_config

        print(f"no pretrained {config.backbone} for {config.dataset} yet: pretraining one with "
              f"configs/pretrain_{config.dataset}.yaml into {run} (once; later runs reuse it)")
        pretrain(pretrain_config(config.dataset, overrides={"backbone": config.backbone}), run,
                 resume=(run / "last.pt").is_file(), data_root=args.data_root, progress=not args.quiet)
        return run / "best.pt"
    from fewzero.train import train

    print(f"no checkpoint for {config.method} on {config.dataset} yet: training one with its config (--config, "
          f"--set) into {run} (once; later runs reuse it)")
    config = load_config(config.method, config.dataset, args.config, *set_values)
    train(config, run, resume=(run / "last.pt").is_file(),
          data_root=args.data_root, progress=not args.quiet)
    return run / "best.pt"


def eval_few_shot(args: argparse.Namespace) -> None:
    from fewzero.checkpoint import learner_from_checkpoint
    from fewzero.config import check_device, load_config
    from fewzero.evaluate import evaluate
    from fewzero.train import episode_sampler, load_split

    overrides, origins = _overrides(args, FEW_SHOT_EVAL_KEYS)
    config = load_config(args.method, args.dataset, args.config, overrides, origins)
    check_device(config.device, require_available=True)
    checkpoint = _checkpoint_for(args, config, _overrides(args, {}))
    # Learner settings given on the command line (--set learner.test_inner_steps=5) apply to the saved model.
    learner_overrides = {key.split(".", 1)[1]: value for key, value in overrides.items() if key.startswith("learner.")}
    # A pretrained backbone carries no learner settings: the eval config's (with the --set ones) apply to it.
    learner, trained_config, _ = learner_from_checkpoint(
        checkpoint, learner_overrides, method=config.method, dataset=config.dataset, learner_settings=config.learner,
        backbone=config.backbone if "backbone" in origins or args.config else None,
        way=config.test_way, shot=config.test_shot)
    # The model's own data settings (image size, backbone) apply; the episode settings come from the eval config.
    config.image_size, config.backbone = trained_config.image_size, trained_config.backbone
    if args.batch_norm:
        if not hasattr(learner, "batch_norm"):
            raise FewzeroError(f"--batch-norm applies to the MAML family, not {config.method}: drop it")
        modes = getattr(learner, "batch_norm_modes", (args.batch_norm,))
        if args.batch_norm not in modes:
            raise FewzeroError(f"{config.method} supports --batch-norm {' or '.join(modes)} only: drop the flag")
        learner.batch_norm = args.batch_norm
    dataset = load_split(config, config.test_subset, args.data_root, progress=not args.quiet)
    sampler = episode_sampler(dataset, config, config.test_episodes, config.test_seed)
    report = evaluate(learner.to(config.device), dataset, sampler, config.device, progress=not args.quiet)
    print(f"{config.method} on {config.dataset} ({config.split} {config.test_subset}) from {checkpoint}")
    if hasattr(learner, "describe_adaptation"):
        print(learner.describe_adaptation())
    stored = _stored_settings_line(checkpoint, config, {**config.learner, **learner_overrides})
    if stored:
        print(stored)
    print(report)
    if args.records:
        print(f"records written to {report.save(args.records)}")


def _stored_settings_line(checkpoint: Path, config, given: dict) -> str:
    """Which learner settings came from the ones a pretrained backbone stores for this task shape ("" if none)."""
    from fewzero.checkpoint import load_checkpoint, task_key, task_settings

    stored = task_settings(load_checkpoint(checkpoint), checkpoint, config.method, config.test_way, config.test_shot)
    used = {key: value for key, value in stored.items() if key not in given}
    if not used:
        return ""
    shape = task_key(config.test_way, config.test_shot)
    return (f"{config.method} settings chosen on validation episodes for {shape} (stored with the backbone): "
            + ", ".join(f"{key}={value}" for key, value in used.items())
            + "; --set learner.KEY=VALUE overrides one")
