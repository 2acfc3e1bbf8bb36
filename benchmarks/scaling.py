"""Throughput of one process against two (started by torchrun through ``--nproc 2``) for MAML, ProtoNet and supervised
pretraining on this machine; bytes all-reduced per step and the gloo all-reduce time; a model of many GPUs.

    python benchmarks/scaling.py                              # writes paper_results/scaling.{json,md}
    python benchmarks/scaling.py --quick --out /tmp/scaling   # a quick look (tiny runs)

Every measurement is a real ``fewzero train`` / ``fewzero pretrain`` run with a shipped config, cut to a fixed amount
of work and validated once at the end. Three settings share the same cores: one process with one torch thread, one
process with two, and two processes of one thread each; they take turns, in reversed order every other round, so
that a change in machine load hits all alike. Work per second comes from the run's own training clock (start-up and
the final validation excluded); the wall time of the whole command, start-up included, is recorded beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import ROOT, provenance  # noqa: E402
from scaling_model import SETTINGS, gradient_bytes, render  # noqa: E402

from fewzero.atomic import write_text  # noqa: E402

WORKLOADS = {  # name -> (fewzero command, unit of work, amount per run, flags that cut the run to that amount)
    "maml": (["train", "--method", "maml", "--config", "configs/maml_omniglot.yaml"], "tasks", 3200,
             lambda n: ["--episodes", str(n), "--set", f"val_every={n}", "--set", "val_episodes=100",
                        "--set", "max_minutes=null"]),
    # meta_batch 2 (the shipped config has 1): each process then takes one of the two episodes of a step
    "protonet": (["train", "--method", "protonet", "--config", "configs/protonet_omniglot.yaml"], "episodes", 100,
                 lambda n: ["--episodes", str(n), "--set", f"val_every={n}", "--set", "val_episodes=100",
                            "--set", "meta_batch=2", "--set", "max_minutes=null"]),
    "pretrain": (["pretrain", "--config", "configs/pretrain_omniglot_first.yaml"], "images", 1,
                 lambda n: ["--epochs", str(n), "--set", "val_episodes=100", "--set", "max_minutes=null"]),
}


def one_run(workload: str, processes: int, threads: int, amount: int, folder: Path, data_root: str | None) -> dict:
    command, unit, _, cut = WORKLOADS[workload]
    # fp32 everywhere: bf16 autocast is only fast on CPUs with AVX-512 BF16, and would time its emulation elsewhere
    cmd = [sys.executable, "-m", "fewzero", *command, *cut(amount), "--set", "precision=fp32", "--quiet", "--out",
           str(folder)]
    cmd += ["--nproc", str(processes)] if processes > 1 else []
    cmd += ["--data-root", data_root] if data_root else []
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((folder / "metrics.json").read_text())
    work = metrics["episodes_done"] if unit != "images" else metrics["train_images"] * metrics["epochs_done"]
    config = metrics["config"]
    steps = (metrics["episodes_done"] // config["meta_batch"] if unit != "images" else
             metrics["epochs_done"] * -(-metrics["train_images"] // config["batch_size"]))
    return {"workload": workload, "processes": processes, "threads": threads, "work": work, "unit": unit,
            "steps": steps, "train_seconds": metrics["train_seconds"],
            "wall_seconds": round(time.perf_counter() - started, 1), "per_second": work / metrics["train_seconds"],
            "val_accuracy": metrics["best_val_accuracy"], "val_ci95": metrics["best_val_ci95"]}


def all_reduce_seconds(n_bytes: int, repeats: int) -> float:
    """Median time of one all_reduce of ``n_bytes`` between two gloo processes that torchrun starts."""
    with tempfile.TemporaryDirectory(prefix="fewzero-allreduce-") as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        str(ROOT / "benchmarks" / "scaling_allreduce.py"), "--bytes", str(n_bytes),
                        "--repeats", str(repeats), "--out", str(out)],
                       cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True, capture_output=True)
        return json.loads(out.read_text())["seconds_per_all_reduce"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--rounds", type=int, default=2, help="rounds of runs (one run of each setting per round)")
    parser.add_argument("--pretrain-rounds", type=int, default=1, help="rounds for pretraining (an epoch is long)")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "scaling"), help="finished runs, kept for a rerun")
    parser.add_argument("--quick", action="store_true", help="tiny runs, to try the script")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", default=str(ROOT / "paper_results" / "scaling"), help="output path without suffix")
    args = parser.parse_args(argv)
    prov = provenance()
    runs = []
    cache = Path(args.runs) / ("quick" if args.quick else "full")
    cache.mkdir(parents=True, exist_ok=True)
    for workload in args.workloads:
        amount = 64 if args.quick and workload != "pretrain" else WORKLOADS[workload][2]
        rounds = 1 if args.quick else (args.pretrain_rounds if workload == "pretrain" else args.rounds)
        for r in range(rounds):
            for label, processes, threads in (SETTINGS if r % 2 == 0 else SETTINGS[::-1]):
                done = cache / f"{workload}_{amount}_{r}_{processes}p{threads}t.json"  # resumable: finished runs kept
                if done.is_file():
                    run = json.loads(done.read_text())
                else:
                    with tempfile.TemporaryDirectory(prefix="fewzero-scaling-") as tmp:
                        run = {**one_run(workload, processes, threads, amount, Path(tmp) / "run", args.data_root),
                               "setting": label, "round": r, "date": provenance()["date"]}
                    write_text(done, json.dumps(run, indent=1))
                print(f"{workload}, {label}: {run['per_second']:.1f} {run['unit']}/s, validation "
                      f"{run['val_accuracy']:.2f} % ({run['wall_seconds']} s wall)", flush=True)
                runs.append(run)
    communication = {}
    for workload in args.workloads:
        n_bytes = gradient_bytes(workload)
        communication[workload] = {"bytes": n_bytes,
                                   "all_reduce_seconds": all_reduce_seconds(n_bytes, 20 if args.quick else 300)}
        print(f"{workload}: {n_bytes} bytes per step, all-reduce {communication[workload]['all_reduce_seconds']:.2e} "
              f"s on gloo", flush=True)
    import torch

    result = {"runs": runs, "communication": communication, "quick": args.quick, "rounds": args.rounds,
              "pretrain_rounds": args.pretrain_rounds,
              "amounts": {w: WORKLOADS[w][2] for w in args.workloads}, "cuda_available": torch.cuda.is_available(),
              "load_before": prov["load_average"], "load_after": provenance()["load_average"], "provenance": prov}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    write_text(out.with_suffix(".md"), render(result))
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
