"""The ``fewzero`` command: ``list``, ``train``, ``pretrain``, ``eval``, ``plot``.

User mistakes (``FewzeroError``) print one line on stderr and exit with status 2, never a traceback.
"""
from __future__ import annotations

import sys
import warnings

from fewzero.cli.parser import build_parser
from fewzero.errors import FewzeroError

__all__ = ["build_parser", "main"]


def _run(args) -> None:
    if args.command == "list":
        from fewzero.cli.listing import cmd_list

        cmd_list(args)
    elif args.command == "train":
        from fewzero.cli.training import cmd_train

        cmd_train(args)
    elif args.command == "pretrain":
        from fewzero.cli.pretraining import cmd_pretrain

        cmd_pretrain(args)
    elif args.command == "plot":
        from fewzero.cli.plotting import cmd_plot

        cmd_plot(args)
    else:
        from fewzero.cli.evaluation import cmd_eval

        cmd_eval(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            # library warnings (torch's, a leaked semaphore) are noise on a command line; errors are ours to say
            warnings.simplefilter("ignore")
            _run(args)
    except FewzeroError as exc:
        print(f"fewzero: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fewzero: interrupted", file=sys.stderr)
        return 130
    return 0
