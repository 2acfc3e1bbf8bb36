"""``fewzero train|pretrain|features --nproc N``: start the command's processes with torchrun (``torch.distributed.run``).

The flags are sugar for ``torchrun --standalone --nproc-per-node N -m fewzero train ...`` (or, with ``--nnodes`` and
``--rdzv-endpoint``, for a c10d rendezvous of several machines): the same elastic agent starts, watches and restarts
the processes, so there is one distributed code path whichever way a run is launched.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile

from fewzero.errors import FewzeroError

LAUNCH_FLAGS = ("nproc", "nnodes", "rdzv_endpoint", "rdzv_timeout", "max_restarts")
DEFAULT_RDZV_TIMEOUT_S = 600.0  # torchrun's default join timeout


def add_launch_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("processes (started with torchrun)")
    group.add_argument("--nproc", type=int, default=None, metavar="N",
                       help="train with N processes on this machine (torchrun); they share each meta-batch or batch")
    group.add_argument("--nnodes", type=int, default=None, metavar="M",
                       help="machines in the run; start the same command on each (needs --rdzv-endpoint)")
    group.add_argument("--rdzv-endpoint", default=None, metavar="HOST:PORT",
                       help="where the machines meet (torchrun's c10d rendezvous), e.g. node0:29400")
    group.add_argument("--rdzv-timeout", type=float, default=None, metavar="S",
                       help=f"seconds to wait for the other machines (default {DEFAULT_RDZV_TIMEOUT_S:g})")
    group.add_argument("--max-restarts", type=int, default=None, metavar="K",
                       help="restart all processes up to K times after one fails; they continue from last.pt")
    group.add_argument("--verbose", action="store_true",
                       help="progress and errors of every process, and torchrun's own log")


def wants_launch(args: argparse.Namespace) -> bool:
    return any(getattr(args, flag, None) is not None for flag in LAUNCH_FLAGS)


def worker_argv(argv: list[str]) -> list[str]:
    """``argv`` without the launch flags: the command every process runs."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in LAUNCH_FLAGS:
        parser.add_argument("--" + flag.replace("_", "-"))
    return parser.parse_known_args(argv)[1]


def _check_flags(args: argparse.Namespace) -> tuple[int, int]:
    from fewzero.distributed import launched_by_torchrun

    if launched_by_torchrun():
        raise FewzeroError("this process was started by torchrun, which already decides the processes: drop --nproc, "
                           "--nnodes, --rdzv-endpoint and --max-restarts")
    nproc, nnodes = (1 if value is None else value for value in (args.nproc, args.nnodes))
    for flag, value in (("--nproc", nproc), ("--nnodes", nnodes)):
        if value < 1:
            raise FewzeroError(f"{flag} must be >= 1, got {value}")
    if args.max_restarts is not None and args.max_restarts < 0:
        raise FewzeroError(f"--max-restarts must be >= 0, got {args.max_restarts}")
    if args.rdzv_timeout is not None and not args.rdzv_timeout > 0:
        raise FewzeroError(f"--rdzv-timeout must be > 0 seconds, got {args.rdzv_timeout}")
    if nnodes > 1 and not args.rdzv_endpoint:
        raise FewzeroError(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT: a port on one of the machines that "
                           f"all of them can reach, the same on every machine")
    if args.rdzv_endpoint and ":" not in args.rdzv_endpoint:
        raise FewzeroError(f"--rdzv-endpoint {args.rdzv_endpoint} must be HOST:PORT, e.g. node0:29400")
    return nproc, nnodes


def launch_world(args: argparse.Namespace) -> int:
    """How many processes the launch flags start in all (checked)."""
    nproc, nnodes = _check_flags(args)
    return nproc * nnodes


def torchrun_args(args: argparse.Namespace, argv: list[str], log_dir: str) -> list[str]:
    """The ``torch.distributed.run`` command line of this launch."""
    nproc, nnodes = _check_flags(args)
    launch = ["--nproc-per-node", str(nproc), "--max-restarts", str(args.max_restarts or 0), "--log-dir", log_dir,
              "--monitor-interval", "0.2"]
    if nnodes == 1 and not args.rdzv_endpoint:
        launch.append("--standalone")
    else:
        timeout = args.rdzv_timeout or DEFAULT_RDZV_TIMEOUT_S
        launch += ["--nnodes", str(nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", args.rdzv_endpoint,
                   "--rdzv-conf", f"join_timeout={timeout:g}"]
    return [*launch, "-m", "fewzero", *worker_argv(argv)]


def launch(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``argv`` (a ``fewzero`` command line) in the processes the launch flags ask for; the exit status.

    A process that fails with a fewzero error has said why in one line (exit status 2, passed on); any other
    failure is one line here. Rendezvous timeouts name the endpoint.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import parse_args, run

    from fewzero.worker_exit import LAUNCH_DIR_ENV

    log_dir = tempfile.mkdtemp(prefix="fewzero-launch-")
    try:
        command = torchrun_args(args, argv, log_dir)
        os.environ[LAUNCH_DIR_ENV] = log_dir  # a process that outlives this one removes it (no orphans, no litter)
        if "OMP_NUM_THREADS" not in os.environ:  # share this machine's cores between the processes
            os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // (args.nproc or 1)))
        if not args.verbose:
            os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
            logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)
        try:
            run(parse_args(command))
        except ChildFailedError as exc:
            rank, failure = exc.get_first_failure()
            if any(f.exitcode == 2 for f in exc.failures.values()):
                return 2  # the failing process printed its fewzero error
            how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit status {failure.exitcode}"
            raise FewzeroError(f"training process {rank} failed ({how}) after {args.max_restarts or 0} restart(s): "
                               f"rerun with --verbose to see every process's output") from None
        except RendezvousError as exc:
            where = args.rdzv_endpoint or "localhost"
            raise FewzeroError(f"the machines did not meet at {where} ({type(exc).__name__}): start the same "
                               f"command with --nnodes {args.nnodes or 1} --rdzv-endpoint {where} on every machine "
                               f"within --rdzv-timeout, and check that {where} can be reached") from None
        return 0
    finally:
        os.environ.pop(LAUNCH_DIR_ENV, None)
        shutil.rmtree(log_dir, ignore_errors=True)
