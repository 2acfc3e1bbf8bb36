"""Domain adaptation benchmark: every method on mnist -> uci_digits, uci_digits -> mnist and mnist -> mnistm, three
seeds, then paper_results/domain_adaptation.md (by benchmarks/domain_adaptation_report.py).

    python benchmarks/domain_adaptation.py                 # all runs (resumable: finished runs are kept), the table
    python benchmarks/domain_adaptation.py --jobs 2 --steps 1500 --seeds 0 1 2

Each run (direction, method, seed) is one ``fewzero.adapt_runner.adapt`` call with the library defaults except
``--steps``; its result (the selected model per criterion, all candidates' label-free criteria, the target test
report, A-distances, seconds, machine) is written to ``runs/domain_adaptation/<source>_to_<target>/<method>_seed<k>.json``.
The t-SNE and confusion-matrix PNGs of seed 0 go to ``paper_results/domain_adaptation/``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

DIRECTIONS = (("mnist", "uci_digits"), ("uci_digits", "mnist"), ("mnist", "mnistm"))
METHODS = ("source_only", "dan", "dann", "coral", "target_oracle")
RUNS = ROOT / "runs" / "domain_adaptation"
PLOTS = ROOT / "paper_results" / "domain_adaptation"


def run_path(runs: Path, source: str, target: str, method: str, seed: int) -> Path:
    return runs / f"{source}_to_{target}" / f"{method}_seed{seed}.json"


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def run_one(source: str, target: str, method: str, seed: int, steps: int, runs: str, plots: str | None) -> str:
    """Train, select and evaluate one (direction, method, seed); write its JSON (and seed 0's plots)."""
    from fewzero.adapt_runner import adapt
    from fewzero.adapt_setup import AdaptSettings
    from fewzero.atomic import write_json
    from provenance import provenance

    started = time.perf_counter()
    settings = AdaptSettings(method=method, source=source, target=target, seed=seed, steps=steps)
    keep: dict = {}
    result = adapt(settings, progress=False, keep=keep)
    seconds = time.perf_counter() - started
    if plots is not None:
        from fewzero.adapt_plots import run_pngs

        stem = Path(plots) / f"{source}_to_{target}_{method}"
        run_pngs(result, keep, f"{stem}_confusion.png", f"{stem}_tsne.png")
    path = run_path(Path(runs), source, target, method, seed)
    write_json(path, {**result.to_dict(), "seconds": round(seconds, 1), "provenance": provenance()})
    return f"{source} -> {target} {method} seed {seed}: {result.report.accuracy:.2f} % ({seconds:.0f} s)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1500, help="training steps per trade-off weight")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (one torch thread each)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--runs", type=Path, default=RUNS)
    parser.add_argument("--report-only", action="store_true", help="write the table from the finished runs")
    parser.add_argument("--note", default="", help="what the reader should know about the runs (kept in the table)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if not args.report_only:
        from fewzero.data.domains import load_domain

        load_domain("mnistm", subset="train")  # build (and cache) MNIST-M once, before the workers need it
        PLOTS.mkdir(parents=True, exist_ok=True)
        todo = [(s, t, m, seed) for seed in args.seeds for (s, t) in DIRECTIONS for m in args.methods
                if not run_path(args.runs, s, t, m, seed).is_file()]
        print(f"{len(todo)} runs to do ({args.jobs} at once)", flush=True)
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=_one_thread) as pool:
            futures = [pool.submit(run_one, s, t, m, seed, args.steps, str(args.runs),
                                   str(PLOTS) if seed == args.seeds[0] else None) for s, t, m, seed in todo]
            for future in futures:
                print(future.result(), flush=True)
    from domain_adaptation_report import write_report

    path = write_report(args.runs, DIRECTIONS, args.methods, args.seeds, shlex.join(["python", *sys.argv]),
                        note=args.note)
    print(f"wrote {path}")
    summary = json.loads(path.with_suffix(".json").read_text())
    for line in summary["targets"]:
        print(line)


if __name__ == "__main__":
    main()
