"""Data-parallel training in processes started by ``torchrun`` (``torch.distributed.run``), on one machine or many.

Outside torchrun nothing here does anything: ``rank_and_world()`` is ``(0, 1)`` and every collective returns at
once. Under torchrun each process reads ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``
from its environment (the env:// rendezvous, its store keys prefixed per restart) and joins the group: NCCL when the
run's device is CUDA (each process on ``cuda:LOCAL_RANK``), gloo on CPU.

Episodic training splits each meta-batch's episodes over the processes, which sum their gradients in one
``all_reduce`` (``sync_step``): every process takes the same optimizer step, so the run follows the trajectory of
one process up to the order of float additions. Supervised pretraining and the zero-shot feature backbone use
``DistributedDataParallel``.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from fewzero import worker_exit
from fewzero.errors import FewzeroError

T = TypeVar("T")
BACKENDS = ("auto", "gloo", "nccl")  # the process-group backends a config may ask for (dist_backend)


class AgreedError(FewzeroError):
    """An error every process raises together (``agreed``); process 0 alone reports it."""


PEER_GONE = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Socket Timeout",
             "NCCL communicator was aborted")


def lost_a_peer(exc: BaseException) -> bool:
    """Whether ``exc`` means another process of the group has gone (torchrun reports, or restarts, that one)."""
    return isinstance(exc, getattr(dist, "DistError", ())) or (
        isinstance(exc, RuntimeError) and any(text in str(exc) for text in PEER_GONE))


def launched_by_torchrun() -> bool:
    """True in a process that torchrun (or ``fewzero ... --nproc``) started."""
    return "TORCHELASTIC_RUN_ID" in os.environ or ("RANK" in os.environ and "WORLD_SIZE" in os.environ)


def environment_ranks() -> tuple[int, int, int]:
    """``(RANK, LOCAL_RANK, WORLD_SIZE)`` from the environment; ``(0, 0, 1)`` outside torchrun."""
    if not launched_by_torchrun():
        return 0, 0, 1
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def restart_count() -> int:
    """How many times torchrun's elastic agent has restarted this group (0 on the first start)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))


def choose_backend(device: str, requested: str = "auto", *, cuda_available: bool | None = None) -> str:
    """The process-group backend for a run on ``device``: NCCL for CUDA, gloo for CPU (``requested="auto"``).

    Raises:
        FewzeroError: ``nccl`` was requested for a CPU run, or on a machine without CUDA.
    """
    if requested not in BACKENDS:
        raise FewzeroError(f"unknown distributed backend {requested!r}: use one of {', '.join(BACKENDS)}")
    cuda_available = torch.cuda.is_available() if cuda_available is None else cuda_available
    is_cuda = torch.device(device).type == "cuda"
    if requested == "nccl" and not (is_cuda and cuda_available):
        reason = "no CUDA GPU is visible" if not cuda_available else f"the run's device is {device}"
        raise FewzeroError(f"dist_backend nccl needs CUDA, but {reason}: use --set dist_backend=gloo (or auto), "
                           f"or run on a GPU with --device cuda")
    if requested != "auto":
        return requested
    return "nccl" if is_cuda else "gloo"


def process_device(device: str, local_rank: int, world: int) -> str:
    """The device of one process: ``cuda`` becomes ``cuda:LOCAL_RANK`` when several processes share a machine."""
    parsed = torch.device(device)
    if parsed.type != "cuda" or world == 1:
        return device
    if parsed.index is not None:
        raise FewzeroError(f"device {device} names one GPU, but {world} processes train: use --device cuda, and "
                           f"each process takes cuda:LOCAL_RANK (choose GPUs with CUDA_VISIBLE_DEVICES)")
    return f"cuda:{local_rank}"


@contextlib.contextmanager
def process_group(device: str, backend: str = "auto", timeout_s: float = 300.0) -> Iterator[str]:
    """Join torchrun's process group for the length of the block (outside torchrun: nothing); yields the device
    this process trains on. A group someone else started (research code) is used as it is and left open."""
    rank, local_rank, world = environment_ranks()
    chosen = choose_backend(device, backend)
    own_device = process_device(device, local_rank, world)
    if world == 1 or (dist.is_available() and dist.is_initialized()):
        yield own_device
        return
    if chosen == "nccl":
        torch.cuda.set_device(torch.device(own_device))
    worker_exit.exit_with_launcher()
    host = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    timeout = datetime.timedelta(seconds=timeout_s)
    try:
        dist.init_process_group(chosen, store=_attempt_store(rank, world, timeout), rank=rank, world_size=world,
                                timeout=timeout)
    except (RuntimeError, ValueError) as exc:  # DistStoreError / DistNetworkError are RuntimeErrors
        raise FewzeroError(f"process {rank} of {world} could not join the group at {host} "
                           f"({str(exc).splitlines()[0]}): check that every node runs the same command and can "
                           f"reach {host}") from None
    worker_exit.joined_a_group()  # so that exit_process skips the interpreter's teardown
    try:
        yield own_device
    except BaseException:
        with contextlib.suppress(Exception):  # a peer that died first leaves nothing to say goodbye to
            dist.destroy_process_group()
        raise
    # every process tears the group down together (one that leaves while another still saves or reduces could cut
    # the other's connections); what is left of gloo at the interpreter's exit is exit_process's business
    with contextlib.suppress(Exception):
        dist.barrier()
    with contextlib.suppress(Exception):
        dist.destroy_process_group()


def _attempt_store(rank: int, world: int, timeout: datetime.timedelta) -> dist.Store:
    """The env:// store (``MASTER_ADDR:MASTER_PORT``), its keys under this restart's prefix.

    torchrun's agent keeps one store across restarts, and env:// writes every attempt's keys unprefixed: a restarted
    process could read the address of a process killed in the attempt before and fail to connect to it.
    """
    agent_hosts_it = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size=world,
                          is_master=not agent_hosts_it and rank == 0, timeout=timeout, multi_tenant=True)
    return dist.PrefixStore(f"fewzero/attempt_{restart_count()}/", store)


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def sync_step(module: torch.nn.Module, flags: list[float]) -> list[float]:
    """Sum every parameter's ``.grad`` and the numbers in ``flags`` over all processes, in one ``all_reduce``.

    A parameter with no gradient here counts as zeros; after the call it has the summed gradient in every process.
    Returns the summed ``flags``. Outside a process group it returns ``flags`` unchanged.
    """
    if rank_and_world()[1] == 1:
        return flags
    params = [p for p in module.parameters() if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
                     + [torch.tensor(flags, dtype=params[0].dtype, device=params[0].device)])
    dist.all_reduce(flat)
    offset = 0
    for p in params:  # views into the summed buffer: no copy on this once-per-step path
        p.grad = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat[offset:].tolist()


def broadcast_state(module: torch.nn.Module) -> None:
    """Make every process's parameters and buffers equal to process 0's."""
    if rank_and_world()[1] == 1:
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)


def broadcast_object(value: T) -> T:
    """Process 0's ``value`` in every process (e.g. a checkpoint only process 0's disk holds)."""
    if rank_and_world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_process(flag: bool) -> bool:
    """True in every process if ``flag`` is true in any of them (one small ``all_reduce``)."""
    if rank_and_world()[1] == 1:
        return bool(flag)
    total = torch.tensor([float(flag)], device=_collective_device())
    dist.all_reduce(total)
    return total.item() > 0


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def agreed(step: Callable[[], T]) -> T:
    """Run ``step`` in every process; if it raises a ``FewzeroError`` in any of them, raise it in all of them.

    The message is the lowest failing rank's, naming that rank when process 0 itself succeeded, so that process 0
    reports what went wrong on another node and no process waits for one that has given up.
    """
    world = rank_and_world()[1]
    try:
        result, message = step(), None
    except FewzeroError as exc:
        if world == 1:
            raise
        result, message = None, str(exc)
    if world == 1:
        return result
    failed = [(r, m) for r, m in enumerate(_gathered(message)) if m is not None]
    if failed:
        first_rank, first = failed[0]
        raise AgreedError(first if first_rank == 0 else f"process {first_rank} of {world}: {first}")
    return result


def _gathered(value: Any) -> list[Any]:
    """Every process's ``value``, in rank order (``all_gather_object``)."""
    values: list[Any] = [None] * rank_and_world()[1]
    dist.all_gather_object(values, value)
    return values


def config_hash(config: dict[str, Any]) -> str:
    """A short hash of a config dict (keys sorted), to compare configs across processes and runs."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def check_same_config(config: dict[str, Any]) -> None:
    """Every process must have been given the same config (the same command and config file on every node)."""
    if rank_and_world()[1] == 1:
        return
    hashes = _gathered(config_hash(config))
    differ = [r for r, h in enumerate(hashes) if h != hashes[0]]
    if differ:
        raise AgreedError(f"the processes were given different configs (hash {hashes[0]} in process 0, "
                          f"{hashes[differ[0]]} in process {differ[0]}): run the same command with the same "
                          f"config file on every node")


def check_divisible(meta_batch: int, episodes: int, world: int) -> None:
    """Each process does the same share of every meta-batch."""
    if meta_batch % world or episodes % world:
        raise AgreedError(f"meta_batch ({meta_batch}) and episodes ({episodes}) must be multiples of the number of "
                           f"processes ({world}) so that each does the same share: set --set meta_batch=... and "
                           f"--episodes to multiples of {world}, or start {_divisor_hint(meta_batch)} processes")


def check_batch_divisible(batch_size: int, world: int) -> None:
    """Each process takes the same share of every mini-batch."""
    if batch_size % world:
        raise AgreedError(f"batch_size ({batch_size}) must be a multiple of the number of processes ({world}) so "
                          f"that each takes the same share of a batch: set --batch-size to a multiple of {world}")


def _divisor_hint(meta_batch: int) -> str:
    divisors = [d for d in range(1, meta_batch + 1) if meta_batch % d == 0]
    return " or ".join(map(str, divisors[-3:]))
