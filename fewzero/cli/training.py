"""``fewzero train``: build the config from flags, check the run folder before any work, train."""
from __future__ import annotations

import argparse
from pathlib import Path

from fewzero.catalogue import method_kind
from fewzero.cli.parser import RESUMABLE_TRAIN_FLAGS, flag_name
from fewzero.errors import FewzeroError
from fewzero.run_folder import RESUMABLE_KEYS

# flag (argparse dest) -> config key
TRAIN_FLAGS = {"split": "split", "seed": "seed", "device": "device", "episodes": "episodes", "lr": "lr",
               "train_way": "train_way", "train_shot": "train_shot", "train_query": "train_query"}
OTHER_CONFIG_FLAGS = ("method", "dataset", "config")


def _set_values(args: argparse.Namespace) -> dict:
    from fewzero.config import parse_override

    return dict(parse_override(text) for text in args.set)


def _resume_changes(args: argparse.Namespace) -> dict:
    """The settings a resumed run may change; any other flag is refused, naming it."""
    given = [flag_name(dest) for dest in (*TRAIN_FLAGS, *OTHER_CONFIG_FLAGS)
             if dest not in RESUMABLE_TRAIN_FLAGS and dest != "method" and getattr(args, dest, None) is not None]
    values = _set_values(args)
    given += [f"--set {key}" for key in values if key not in RESUMABLE_KEYS]
    if given:
        allowed = ", ".join([*map(flag_name, RESUMABLE_TRAIN_FLAGS), *(f"--set {k}" for k in RESUMABLE_KEYS)])
        raise FewzeroError(f"--resume continues the run with its saved config: drop {', '.join(given)} "
                           f"(only {allowed} may change)")
    changes = dict(values)
    if args.episodes is not None:
        changes["episodes"] = args.episodes
    return changes


def cmd_train(args: argparse.Namespace, argv: list[str] | None = None) -> int | None:
    from fewzero.cli.launch import launch, launch_world, wants_launch
    from fewzero.config import command_line_overrides, load_config
    from fewzero.distributed import check_divisible, choose_backend
    from fewzero.train import train

    if args.method == "ensemble":
        raise FewzeroError("an ensemble is not trained: it combines trained members. Train each member (fewzero "
                           "train, or fewzero pretrain for transfer learners), list them in a config and run "
                           "`fewzero eval --method ensemble --config FILE`")
    if method_kind(args.method) == "zero-shot":
        raise FewzeroError(f"{args.method} is a zero-shot method: it is fitted by `fewzero eval --method "
                           f"{args.method}`, not trained with `fewzero train`")
    if args.resume and args.out is None:
        raise FewzeroError("--resume needs --out: the run folder to continue")
    config = None
    if not args.resume:
        overrides, origins = command_line_overrides(
            args.set, {flag_name(dest): (key, getattr(args, dest)) for dest, key in TRAIN_FLAGS.items()})
        config = load_config(args.method, args.dataset, args.config, overrides, origins)
    if wants_launch(args):  # start the processes with torchrun; each of them runs this command without the flags
        if config is not None:
            check_divisible(config.meta_batch, config.episodes, launch_world(args))
            choose_backend(config.device, config.dist_backend)
        return launch(args, argv or [])
    if args.resume:
        out = Path(args.out)
        metrics = train(None, out, resume=True, data_root=args.data_root, progress=not args.quiet,
                        tensorboard=args.log == "tensorboard", changes=_resume_changes(args), method=args.method,
                        verbose=args.verbose)
    else:
        out = Path(args.out or f"runs/{config.method}_{config.dataset}")
        metrics = train(config, out, overwrite=args.overwrite, data_root=args.data_root, progress=not args.quiet,
                        tensorboard=args.log == "tensorboard", verbose=args.verbose)
    if metrics:  # process 0 (the others return no metrics)
        print(f"best validation accuracy {metrics['best_val_accuracy']:.2f} +- {metrics['best_val_ci95'] or 0:.2f} "
              f"% at episode {metrics['best_episode']} ({metrics['train_seconds']:.0f} s); checkpoint "
              f"{out / 'best.pt'}")
    return None
