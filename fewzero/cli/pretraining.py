"""``fewzero pretrain``: supervised pretraining of a backbone for the transfer learners; resumable like train."""
from __future__ import annotations

import argparse
from pathlib import Path

from fewzero.cli.parser import flag_name
from fewzero.errors import FewzeroError
from fewzero.run_folder import RESUMABLE_KEYS

# flag (argparse dest) -> config key
PRETRAIN_FLAGS = {"backbone": "backbone", "split": "split", "seed": "seed", "device": "device", "epochs": "epochs",
                  "batch_size": "batch_size", "lr": "lr"}


def _resume_changes(args: argparse.Namespace) -> dict:
    """The settings a resumed pretraining may change (epochs, max_minutes); any other flag is refused."""
    from fewzero.config import parse_override

    values = dict(parse_override(text) for text in args.set)
    given = [flag_name(dest) for dest in (*PRETRAIN_FLAGS, "dataset", "config")
             if dest != "epochs" and getattr(args, dest, None) is not None]
    given += [f"--set {key}" for key in values if key not in RESUMABLE_KEYS]
    if given:
        raise FewzeroError(f"--resume continues the run with its saved config: drop {', '.join(given)} (only "
                           f"--epochs, --set epochs, --set max_minutes may change)")
    return {**values, **({"epochs": args.epochs} if args.epochs is not None else {})}


def cmd_pretrain(args: argparse.Namespace, argv: list[str] | None = None) -> int | None:
    from fewzero.cli.launch import launch, launch_world, wants_launch
    from fewzero.config import command_line_overrides
    from fewzero.distributed import check_batch_divisible, choose_backend
    from fewzero.pretrain import pretrain, pretrain_config

    tensorboard = args.log == "tensorboard"
    if args.resume and args.out is None:
        raise FewzeroError("--resume needs --out: the run folder to continue")
    config = None
    if not args.resume:
        overrides, origins = command_line_overrides(
            args.set, {flag_name(dest): (key, getattr(args, dest)) for dest, key in PRETRAIN_FLAGS.items()})
        config = pretrain_config(args.dataset or "omniglot", args.config, overrides, origins)
    if wants_launch(args):  # start the processes with torchrun; each of them runs this command without the flags
        if config is not None:
            check_batch_divisible(config.batch_size, launch_world(args))
            choose_backend(config.device, config.dist_backend)
        return launch(args, argv or [])
    if args.resume:
        out = Path(args.out)
        metrics = pretrain(None, out, resume=True, data_root=args.data_root, progress=not args.quiet,
                           tensorboard=tensorboard, changes=_resume_changes(args), verbose=args.verbose)
    else:
        out = Path(args.out or f"runs/pretrain_{config.backbone}_{config.dataset}")
        metrics = pretrain(config, out, overwrite=args.overwrite, data_root=args.data_root, progress=not args.quiet,
                           tensorboard=tensorboard, verbose=args.verbose)
    if metrics:  # process 0 (the others return no metrics)
        print(f"best validation accuracy ({metrics['config']['method']}, {metrics['config']['test_way']}-way "
              f"{metrics['config']['test_shot']}-shot) {metrics['best_val_accuracy']:.2f} +- "
              f"{metrics['best_val_ci95'] or 0:.2f} % after epoch {metrics['best_epoch']} "
              f"({metrics['train_seconds']:.0f} s); pretrained backbone {out / 'best.pt'}")
    return None
