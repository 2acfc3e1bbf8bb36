"""The ``fewzero`` command: ``list``, ``train``, ``pretrain``, ``features``, ``eval``, ``tune``, ``adapt``, ``plot``.

User mistakes (``FewzeroError``) print one line on stderr and exit with status 2, never a traceback. In processes
started by torchrun, process 0 says it (and the first process of each other machine, for errors it found alone).
"""
from __future__ import annotations

import os
import sys
import warnings

from fewzero.cli.parser import build_parser
from fewzero.errors import FewzeroError

__all__ = ["build_parser", "main"]


def _run(args, argv: list[str]) -> int | None:
    if args.command == "list":
        from fewzero.cli.listing import cmd_list

        cmd_list(args)
    elif args.command == "train":
        from fewzero.cli.training import cmd_train

        return cmd_train(args, argv)
    elif args.command == "pretrain":
        from fewzero.cli.pretraining import cmd_pretrain

        return cmd_pretrain(args, argv)
    elif args.command == "features":
        from fewzero.cli.features import cmd_features

        return cmd_features(args, argv)
    elif args.command == "tune":
        from fewzero.cli.tuning import cmd_tune

        cmd_tune(args)
    elif args.command == "adapt":
        from fewzero.cli.adapting import cmd_adapt

        cmd_adapt(args, argv)
    elif args.command == "plot":
        from fewzero.cli.plotting import cmd_plot

        cmd_plot(args)
    else:
        from fewzero.cli.evaluation import cmd_eval

        cmd_eval(args)


def _reports(exc: FewzeroError, verbose: bool) -> bool:
    """Whether this process prints ``exc``: always outside torchrun; under it, process 0, every process with
    ``--verbose``, and the first process of another machine for an error the processes did not raise together."""
    if "RANK" not in os.environ or verbose:
        return True
    from fewzero.distributed import AgreedError, environment_ranks

    rank, local_rank, _ = environment_ranks()
    return rank == 0 or (local_rank == 0 and not isinstance(exc, AgreedError))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            # library warnings (torch's, a leaked semaphore) are noise on a command line; errors are ours to say
            warnings.simplefilter("ignore")
            code = _run(args, argv)
    except FewzeroError as exc:
        if _reports(exc, getattr(args, "verbose", False)):
            print(f"fewzero: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fewzero: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # under torchrun a peer that died breaks our collectives: the agent tells of it
        if "RANK" not in os.environ or getattr(args, "verbose", False):
            raise
        from fewzero.distributed import lost_a_peer

        if not lost_a_peer(exc):
            raise
        return 1
    return code or 0


def entry() -> None:
    """The ``fewzero`` command and ``python -m fewzero``: ``main``, then the exit that a torchrun worker needs
    (``fewzero.worker_exit.exit_process``)."""
    from fewzero.worker_exit import exit_process

    exit_process(main())
