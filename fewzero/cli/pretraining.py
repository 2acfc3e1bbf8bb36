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


def cmd_pretrain(args: argparse.Namespace) -> None:
    from fewzero.config import command_line_overrides
    from fewzero.pretrain import pretrain, pretrain_config

    tensorboard = args.log == "tensorboard"
    if args.resume:
        if args.out is None:
            raise FewzeroError("--resume needs --out: the run folder to continue")
        out = Path(args.out)
        metrics = pretrain(None, out, resume=True, data_root=args.data_root, progress=not args.quiet,
                           tensorboard=tensorboard, changes=_resume_changes(args))
    else:
        overrides, origins = command_line_overrides(
            args.set, {flag_name(dest): (key, getattr(args, dest)) for dest, key in PRETRAIN_FLAGS.items()})
        config = pretrain_config(args.dataset or "omniglot", args.config, overrides, origins)
        out = Path(args.out or f"runs/pretrain_{config.backbone}_{config.dataset}")
        metrics = pretrain(config, out, overwrite=args.overwrite, data_root=args.data_root, progress=not args.quiet,
                           tensorboard=tensorboard)
    print(f"best validation accuracy ({metrics['config']['method']}, {metrics['config']['test_way']}-way "
          f"{metrics['config']['test_shot']}-shot) {metrics['best_val_accuracy']:.2f} +- "
          f"{metrics['best_val_ci95'] or 0:.2f} % after epoch {metrics['best_epoch']} ({metrics['train_seconds']:.0f} "
          f"s); pretrained backbone {out / 'best.pt'}")
