"""benchmarks/precision_speed.py: fp32 and bf16 take turns, the ratio is fp32 speed over bf16 speed."""
from __future__ import annotations

import time

from benchmark_scripts import load_script

bench = load_script("precision_speed")


def test_turns_alternate_and_the_slower_arithmetic_shows_in_the_ratio():
    calls = []

    def step(bf16: bool) -> None:
        calls.append(bf16)
        time.sleep(0.004 if bf16 else 0.001)
    row = bench.measure(step, rounds=4, warmup=1)
    assert calls == [False, True, True, False, False, True, True, False, False, True]
    assert row["fp32_over_bf16"] > 1.5 and row["fp32_steps_per_s"] > row["bf16_steps_per_s"]
    report = {"rows": {"step": {"shape": "s", **row}}, "rounds": 4, "warmup": 1, "auto": "fp32", "native_flags": [],
              "load_before": "0", "provenance": {"command": "python b", "commit": "c", "date": "d", "machine": "m",
                                                 "load_average": "0"}}
    text = bench.render(report)
    assert f"| step | s | {row['fp32_steps_per_s']:.2f} |" in text and "resolves to **fp32**" in text
