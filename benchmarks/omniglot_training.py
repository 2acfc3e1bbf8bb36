"""Train the models of the Omniglot benchmark as ``fewzero train`` child processes: reuse finished runs, resume
killed ones, record each run's provenance, and stop the children still running when the benchmark is interrupted."""
from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from fewzero.atomic import write_text

from omniglot_settings import run_dir
from provenance import ROOT, portable, provenance


# configs trained with two processes sharing each meta-batch (torchrun, one per core: paper_results/scaling.md)
PROCESSES = {"configs/maml_omniglot.yaml": 2, "configs/fomaml_omniglot.yaml": 2}


def train_command(method: str, config: str, run: Path, data_root: str | None, quick: bool) -> list[str]:
    cmd = [sys.executable, "-m", "fewzero", "train", "--method", method, "--dataset", "omniglot",
           "--config", config, "--out", str(run)]
    if PROCESSES.get(config, 1) > 1:
        cmd += ["--nproc", str(PROCESSES[config])]
    if (run / "last.pt").is_file():
        cmd.append("--resume")
    if data_root:
        cmd += ["--data-root", data_root]
    if quick:
        cmd += ["--episodes", "32", "--set", "val_every=16", "--set", "val_episodes=10", "--set", "meta_batch=8"]
    return cmd


def train_models(method: str, models: dict[str, str], runs: Path, data_root: str | None, quick: bool,
                 threads: int | None, parallel: bool) -> dict[str, dict]:
    """Train (or reuse, or resume) every model with the real CLI; return {model: metrics with provenance}.

    If this script is interrupted (Ctrl-C, SIGTERM) or a training fails, the training still running is stopped
    rather than left unobserved; it resumes from its last saved ``last.pt`` when the script runs again."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    started: list[tuple[subprocess.Popen, list[str]]] = []
    try:
        for model, config in models.items():
            run = run_dir(runs, method, model)
            if (run / "metrics.json").is_file() and not (quick and (run / "last.pt").is_file()):
                continue
            if not (run / "last.pt").is_file():
                run.mkdir(parents=True, exist_ok=True)
                prov = provenance()
                prov["command"] = portable(shlex.join(["python", *train_command(method, config, run, data_root, quick)[1:]]))
                prov["threads"] = threads
                write_text(run / "provenance.json", json.dumps(prov, indent=1))
            elif (run / "provenance.json").is_file():  # a killed run resumes: record when and at which commit
                prov = json.loads((run / "provenance.json").read_text())
                now = provenance()
                prov.setdefault("resumed", []).append({k: now[k] for k in ("commit", "date", "load_average")})
                write_text(run / "provenance.json", json.dumps(prov, indent=1))
            cmd = train_command(method, config, run, data_root, quick)
            print("$", " ".join(cmd[1:]), flush=True)
            started.append((subprocess.Popen(cmd, cwd=ROOT, env=env), cmd))
            if not parallel:
                _wait(*started[-1])
        for process, cmd in started:  # side by side: wait for all (a finished one returns at once)
            _wait(process, cmd)
    except BaseException:
        for process, _ in started:
            if process.poll() is None:
                process.terminate()
                process.wait()
        raise
    out = {}
    for model, config in models.items():
        run = run_dir(runs, method, model)
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["command"] = f"fewzero train --method {method} --dataset omniglot --config {config} --out {run}"
        if (run / "provenance.json").is_file():
            metrics["provenance"] = json.loads((run / "provenance.json").read_text())
        else:
            finished = datetime.datetime.fromtimestamp((run / "metrics.json").stat().st_mtime, datetime.timezone.utc)
            metrics["provenance"] = {"note": "run reused; its commit was not recorded when it was trained",
                                     "finished": finished.strftime("%Y-%m-%d %H:%M UTC")}
        out[model] = metrics
    return out


def _wait(process: subprocess.Popen, cmd: list[str]) -> None:
    if process.wait() != 0:
        sys.exit(f"training failed ({process.returncode}): {' '.join(cmd[1:])}")
