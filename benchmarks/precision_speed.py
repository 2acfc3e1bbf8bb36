"""Training speed in fp32 and in bf16 autocast on this machine, side by side: what ``precision: auto`` decides on.

    python benchmarks/precision_speed.py --threads 1     # writes paper_results/precision_speed.{json,md}

One step of each shipped ``precision: auto`` config's training, on random inputs of the config's shapes (the speed
does not depend on pixel values): a ProtoNet episode (configs/protonet_omniglot.yaml: 60-way 1-shot, 5 queries), a
Relation Network episode (configs/relation_omniglot.yaml: 5-way 1-shot, 19 queries) and a pretraining mini-batch
(configs/pretrain_omniglot_first.yaml: 128 images, cross-entropy over 4,112 classes); forward, loss, backward, Adam step.
fp32 and bf16 take turns step by step (AB BA ...), so that a change in machine load hits both alike.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import ROOT, provenance  # noqa: E402

from fewzero.atomic import write_text  # noqa: E402
from fewzero.checkpoint import build_learner  # noqa: E402
from fewzero.config import load_config  # noqa: E402
from fewzero.episode import Episode  # noqa: E402
from fewzero.precision import NATIVE_BF16_CPU_FLAGS, cpu_flags, resolve_precision  # noqa: E402

OUT = ROOT / "paper_results" / "precision_speed"


def episode_step(method: str):
    """One meta-training step of ``configs/<method>_omniglot.yaml`` on a random episode of its training shape."""
    config = load_config(method, "omniglot", ROOT / f"configs/{method}_omniglot.yaml")
    learner = build_learner(config)
    optimizer = torch.optim.Adam(learner.parameters(), 1e-3)
    way, shot, query = config.train_way, config.train_shot, config.train_query
    episode = Episode(support_x=torch.rand(way * shot, 1, 28, 28), support_y=torch.arange(way).repeat_interleave(shot),
                      query_x=torch.rand(way * query, 1, 28, 28), query_y=torch.arange(way).repeat_interleave(query),
                      class_ids=torch.arange(way))

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = learner.episode_loss(episode)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step, f"{way}-way {shot}-shot, {query} queries"


def pretraining_step():
    config = load_config("simpleshot", "omniglot", ROOT / "configs/pretrain_omniglot_first.yaml")
    backbone = build_learner(config).backbone
    head = torch.nn.Linear(64, 4112)
    optimizer = torch.optim.Adam([*backbone.parameters(), *head.parameters()], 1e-3)
    x, y = torch.rand(config.batch_size, 1, 28, 28), torch.randint(0, 4112, (config.batch_size,))

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(head(backbone(x).flatten(1)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step, f"{config.batch_size} images, 4,112 classes"


def measure(step, rounds: int, warmup: int) -> dict:
    times = {False: [], True: []}
    for r in range(warmup + rounds):
        for bf16 in ((False, True) if r % 2 == 0 else (True, False)):
            started = time.perf_counter()
            step(bf16)
            if r >= warmup:
                times[bf16].append(time.perf_counter() - started)
    fp32, bf16 = (len(times[k]) / sum(times[k]) for k in (False, True))
    return {"fp32_steps_per_s": round(fp32, 3), "bf16_steps_per_s": round(bf16, 3), "fp32_over_bf16": round(fp32 / bf16, 2),
            "median_paired_ratio": round(statistics.median(b / a for a, b in zip(times[False], times[True])), 2)}


def render(report: dict) -> str:
    p = report["provenance"]
    lines = ["# Training speed: fp32 vs bf16 autocast on this machine", "",
             f"Steps per second (higher is better), {report['rounds']} timed steps each after {report['warmup']} "
             "warm-up steps, fp32 and bf16 taking turns. Written by `benchmarks/precision_speed.py`.", "",
             f"CPU flags for native bf16 ({', '.join(sorted(NATIVE_BF16_CPU_FLAGS))}): "
             f"{', '.join(report['native_flags']) or 'none'}; `precision: auto` resolves to **{report['auto']}** here.",
             "", "| training step | shape | fp32 steps/s | bf16 steps/s | fp32 / bf16 | median paired ratio |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, row in report["rows"].items():
        lines.append(f"| {name} | {row['shape']} | {row['fp32_steps_per_s']:.2f} | {row['bf16_steps_per_s']:.2f} | "
                     f"{row['fp32_over_bf16']:.2f}x | {row['median_paired_ratio']:.2f}x |")
    lines += ["", f"Command: `{p['command']}`; commit {p['commit']}; {p['date']}; {p['machine']}; load average "
              f"{report['load_before']} before, {p['load_average']} after.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=OUT, help="output path stem")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = {}
    for name, (step, shape) in {"ProtoNet episode": episode_step("protonet"),
                                "Relation Network episode": episode_step("relation"),
                                "pretraining mini-batch": pretraining_step()}.items():
        rows[name] = {"shape": shape, **measure(step, args.rounds, args.warmup)}
        print(name, rows[name], flush=True)
    report = {"rows": rows, "rounds": args.rounds, "warmup": args.warmup, "auto": resolve_precision("auto", "cpu"),
              "native_flags": sorted(cpu_flags() & NATIVE_BF16_CPU_FLAGS), "load_before": load_before,
              "provenance": provenance()}
    write_text(args.out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    write_text(args.out.with_suffix(".md"), render(report))
    print(f"wrote {args.out}.md")


if __name__ == "__main__":
    main()
