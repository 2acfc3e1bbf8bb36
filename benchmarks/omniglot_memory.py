"""Resident memory of this process while a function runs: sampled by a background thread, summarised per tenth.

Used by ``omniglot_evaluation.py`` to show that evaluating a gradient-based learner keeps no graph across episodes:
the peak resident set size of each tenth of a 1000-episode evaluation stays flat.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


def trace_rss(run: Callable[[], Any], every_s: float = 0.02) -> tuple[Any, dict]:
    """``run()``'s result and {"before_mib", "peak_per_tenth_mib": [10 floats], "growth_mib"}: the peak RSS in each
    tenth of ``run``'s wall time, and the last tenth's peak minus the first's (~0 when nothing accumulates)."""
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter(), rss_mib()))
            done.wait(every_s)

    before = rss_mib()
    thread = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    thread.start()
    try:
        result = run()
    finally:
        done.set()
        thread.join()
    # One last reading after ``run`` returns: on a busy machine the sampling thread may have had no turn in the last
    # tenth, and the state at the end is what "growth" has to see.
    samples.append((time.perf_counter(), rss_mib()))
    span = max(samples[-1][0] - start, 1e-9)
    peaks = [0.0] * 10
    for t, rss in samples:
        tenth = min(int(10 * (t - start) / span), 9)
        peaks[tenth] = max(peaks[tenth], rss)
    filled = [p for p in peaks if p > 0]
    return result, {"before_mib": round(before, 1), "peak_per_tenth_mib": [round(p, 1) for p in peaks],
                    "growth_mib": round(filled[-1] - filled[0], 1) if filled else 0.0, "samples": len(samples)}
