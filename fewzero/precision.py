"""Training arithmetic: ``fp32``, ``bf16`` autocast, or ``auto``: bf16 where the hardware computes it natively.

On CPUs without AVX-512 BF16 or AMX instructions bf16 is emulated, and bf16 autocast trains several times slower
than fp32 (8-10x on a 2-core AMD EPYC with AVX2 only: paper_results/precision_speed.md); on such machines
``auto`` trains in fp32.
"""
from __future__ import annotations

from pathlib import Path

PRECISIONS = ("fp32", "bf16", "auto")
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The instruction-set flags of the first CPU in ``cpuinfo`` (Linux); empty where it cannot be read."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return frozenset()
    return next((frozenset(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")),
                frozenset())


def native_bf16(device: str) -> bool:
    """Whether ``device`` (``cpu``, ``cuda:1``, ...) computes bf16 natively."""
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return kind == "cpu" and bool(cpu_flags() & NATIVE_BF16_CPU_FLAGS)


def resolve_precision(precision: str, device: str) -> str:
    """``precision``, with ``auto`` replaced by ``bf16`` or ``fp32`` for ``device``."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"
