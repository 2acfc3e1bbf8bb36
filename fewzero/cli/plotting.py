"""``fewzero plot RUN_DIR... --out curves.png``: learning curves of one or several runs."""
from __future__ import annotations

import argparse

from fewzero.cli.outputs import check_writable_file


def cmd_plot(args: argparse.Namespace) -> None:
    from fewzero.plot import plot_runs

    out = check_writable_file(args.out, "--out")
    metrics = tuple(args.metric) if args.metric else ("val_accuracy", "train_loss")
    print(f"learning curves written to {plot_runs(args.runs, out, metrics=metrics)}")
