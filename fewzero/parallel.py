"""Data-parallel meta-training on one machine: worker processes share each meta-batch's episodes.

Worker ``rank`` of ``world`` meta-trains on episodes ``rank, rank + world, ...``; after each meta-batch the
workers sum their gradients (one ``all_reduce`` over gloo), so every worker takes the same optimizer step and the
run follows the same trajectory as a single process (up to the order of float additions). MAML's per-task kernels
are too small to keep two threads busy: on 2 CPU cores two workers train 1.41x as many tasks per second as one
process (paper_results/workers.md).
"""
from __future__ import annotations

import logging
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fewzero.errors import FewzeroError


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of workers); (0, 1) outside a worker group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def sync_step(module: torch.nn.Module, flags: list[float]) -> list[float]:
    """Sum every parameter's ``.grad`` and the numbers in ``flags`` over all workers, in one ``all_reduce``.

    A parameter with no gradient on this worker counts as zeros; after the call it has the summed gradient on
    every worker. Returns the summed ``flags``. Outside a worker group it returns ``flags`` unchanged.
    """
    if rank_and_world()[1] == 1:
        return flags
    params = [p for p in module.parameters() if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
                     + [torch.tensor(flags, dtype=params[0].dtype)])
    dist.all_reduce(flat)
    offset = 0
    for p in params:  # views into the summed buffer: no copy on this once-per-step path
        p.grad = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat[offset:].tolist()


def broadcast_state(module: torch.nn.Module) -> None:
    """Make every worker's parameters and buffers equal to worker 0's."""
    if rank_and_world()[1] == 1:
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def _worker(rank: int, world: int, store: str, threads: int, errors: Any, fn: Callable, args: tuple) -> None:
    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops every worker
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        fn(*args)
    except FewzeroError as exc:
        errors.put(str(exc))
        raise SystemExit(1) from None
    finally:
        dist.destroy_process_group()


def run_workers(fn: Callable, args: tuple, workers: int) -> None:
    """Run ``fn(*args)`` in ``workers`` processes joined into one gloo group, and wait for all of them.

    Threads are split evenly between the workers. A ``FewzeroError`` in a worker is raised here with its message;
    Ctrl-C or SIGTERM stops every worker before this process exits.
    """
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)  # our error says it all
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    threads = max(1, torch.get_num_threads() // workers)
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    with tempfile.TemporaryDirectory(prefix="fewzero-workers-") as tmp:
        store = str(Path(tmp) / "store")
        context = mp.start_processes(_worker, args=(workers, store, threads, errors, fn, args), nprocs=workers,
                                     join=False, start_method="spawn")
        try:
            while not context.join():
                pass
        except (mp.ProcessExitedException, mp.ProcessRaisedException) as exc:
            if not errors.empty():
                raise FewzeroError(errors.get()) from None
            raise FewzeroError(f"a training worker failed ({str(exc).strip().splitlines()[-1]}): "
                               f"train again with workers=1 to see the full error") from None
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.terminate()
                process.join()
            signal.signal(signal.SIGTERM, previous)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")

