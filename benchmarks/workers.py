"""Meta-training tasks per second of one process against ``workers`` processes, in one run, on this machine.

    python benchmarks/workers.py                    # writes paper_results/workers.{json,md}
    python benchmarks/workers.py --tasks 800 --rounds 1 --out /tmp/workers   # a quick look

Each measurement is a real ``fewzero train`` run on Omniglot with a method's shipped 5-way config (for ``maml``:
Conv4Strided, 5-way 1-shot, 8 tasks per meta-batch) cut to ``--tasks`` tasks, validated once at the end. Three
settings: one process with one torch thread, one process with ``workers`` threads, and ``workers`` processes of one
thread each (the same cores in all). They take turns, in reversed order every other round, so that a change in
machine load hits all alike. Tasks per second come from
the run's own training clock (data loading and process start-up excluded); the wall time of the whole run,
start-up included, is recorded beside it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import ROOT, provenance  # noqa: E402

import torch  # noqa: E402

from fewzero.atomic import write_text  # noqa: E402
from fewzero.config import load_config  # noqa: E402
from fewzero.train import train  # noqa: E402


def one_run(method: str, workers: int, threads: int, tasks: int, folder: Path) -> dict:
    """One training run of ``tasks`` tasks; ``threads`` torch threads in all (split between the workers)."""
    config = load_config(method, "omniglot", overrides={
        "episodes": tasks, "val_every": tasks, "val_episodes": 20, "max_minutes": None, "workers": workers})
    torch.set_num_threads(threads)
    started = time.perf_counter()
    metrics = train(config, folder, progress=False)
    return {"setting": label(workers, threads), "tasks": metrics["episodes_done"],
            "train_seconds": metrics["train_seconds"],
            "wall_seconds": round(time.perf_counter() - started, 1),
            "tasks_per_second": metrics["episodes_done"] / metrics["train_seconds"]}


def label(workers: int, threads: int) -> str:
    if workers == 1:
        return f"1 process, {threads} thread{'s' if threads > 1 else ''}"
    return f"{workers} worker processes, {threads // workers} thread each"


def render(result: dict) -> str:
    rows = ["| setting | runs | tasks per run | tasks/s (median) | wall s per run (median, start-up included) |",
            "| --- | --- | --- | --- | --- |"]
    for setting, s in result["summary"].items():
        rows.append(f"| {setting} | {s['runs']} | {result['tasks']} | {s['tasks_per_second']:.1f} | "
                    f"{s['wall_seconds']:.1f} |")
    p = result["provenance"]
    return "\n".join([
        f"# Meta-training with worker processes: {result['method']} on Omniglot", "",
        f"`fewzero train` with `workers=1` and `workers={result['workers']}` on the same config "
        f"(`configs/{result['method']}_omniglot.yaml`, cut to {result['tasks']} tasks), taking turns. "
        f"The workers share each meta-batch and sum their gradients, so both settings see the same tasks and "
        f"train the same model (tests/test_parallel.py checks this).", "",
        *rows, "",
        f"**Speed-up: {result['ratio']:.2f}x** the tasks per second of the faster single-process setting, with "
        f"{result['workers']} workers.", "",
        f"Machine load: load average {result['load_before']} before, {result['load_after']} after.", "",
        f"Command: `{p['command']}`; commit {p['commit']}; {p['date']}; {p['machine']}.", ""])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="maml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=3200, help="tasks per training run")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs (one of each setting per pair)")
    parser.add_argument("--out", default=str(ROOT / "paper_results" / "workers"), help="output path without suffix")
    args = parser.parse_args(argv)
    prov = provenance()
    settings = [(1, 1), (1, args.workers), (args.workers, args.workers)]  # (workers, threads in all)
    runs = []
    with tempfile.TemporaryDirectory(prefix="fewzero-workers-bench-") as tmp:
        for r in range(args.rounds):
            for workers, threads in (settings if r % 2 == 0 else settings[::-1]):
                run = one_run(args.method, workers, threads, args.tasks, Path(tmp) / f"{r}_{workers}_{threads}")
                print(f"{run['setting']}: {run['tasks_per_second']:.1f} tasks/s ({run['wall_seconds']} s wall)")
                runs.append(run)
    summary = {}
    for workers, threads in settings:
        mine = [r for r in runs if r["setting"] == label(workers, threads)]
        summary[label(workers, threads)] = {"runs": len(mine),
                                            "tasks_per_second": statistics.median(r["tasks_per_second"] for r in mine),
                                            "wall_seconds": statistics.median(r["wall_seconds"] for r in mine)}
    single = max(summary[label(1, t)]["tasks_per_second"] for t in (1, args.workers))
    result = {"method": args.method, "workers": args.workers, "tasks": args.tasks, "runs": runs, "summary": summary,
              "ratio": summary[label(args.workers, args.workers)]["tasks_per_second"] / single,
              "load_before": prov["load_average"], "load_after": provenance()["load_average"], "provenance": prov}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    write_text(out.with_suffix(".md"), render(result))
    print(f"{result['ratio']:.2f}x; wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
