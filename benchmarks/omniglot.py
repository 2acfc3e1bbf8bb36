"""Reproduce the Omniglot few-shot tables (Vinyals split, 1000 test episodes, 15 queries per class).

    python benchmarks/omniglot.py --method protonet          # 2 models (1-shot, 5-shot), ~1 hour on 2 CPUs
    python benchmarks/omniglot.py --method maml               # 2 models (5-way, 20-way), up to 1 hour each
    python benchmarks/omniglot.py --method fomaml --models 5-way
    python benchmarks/omniglot.py --method anil --render-only # rewrite the md from the json
    python benchmarks/omniglot.py --method maml --packaged    # re-evaluate the models fewzero/pretrained ships

Each model is trained with ``fewzero train`` and a config in ``configs/``, then evaluated by the shared evaluator.
ProtoNet trains a 1-shot and a 5-shot model (each serves both way settings, as in Snell et al. 2017); MAML, FOMAML
and ANIL train a 5-way and a 20-way model on 1-shot tasks (each serves both shot settings: the head is tied to the
number of ways). MAML, FOMAML and ANIL share one table, ``paper_results/omniglot_maml.{json,md}``; ProtoNet has
``omniglot_protonet``. Results are merged per setting, so the models of a table may be trained in separate runs of
this script; each setting records the training run, commit and date behind it. Gradient-based learners are reported
at their training inner step size (Finn et al.'s protocol) and at one chosen per setting on validation episodes.

Runs already finished under ``--runs`` are reused; a killed run is resumed. ``--threads`` sets torch's threads per
training process: with ``--parallel``, the models of one method train side by side, one process each.
"""
from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import ROOT, provenance, write_atomic  # noqa: E402

SETTINGS = [(5, 1), (5, 5), (20, 1), (20, 5)]
FINN = "Finn et al., Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks, ICML 2017, Table 1"
PUBLISHED = {
    "protonet": {"source": "Snell et al., Prototypical Networks for Few-shot Learning, NeurIPS 2017, Table 1",
                 "accuracy": {"5w1s": 98.8, "5w5s": 99.7, "20w1s": 96.0, "20w5s": 98.9}},
    "maml": {"source": FINN, "accuracy": {"5w1s": 98.7, "5w5s": 99.9, "20w1s": 95.8, "20w5s": 98.9}},
    "fomaml": {"source": FINN + " (first-order approximation)",
               "accuracy": {"5w1s": 98.3, "5w5s": 99.2, "20w1s": 89.4, "20w5s": 97.9}},
    # Raghu et al. 2020 report ANIL on 20-way Omniglot only; their claim is that ANIL matches MAML, so ANIL's
    # target is MAML's published number.
    "anil": {"source": FINN + " (MAML's numbers: ANIL, Raghu et al. ICLR 2020, claims to match MAML)",
             "accuracy": {"5w1s": 98.7, "5w5s": 99.9, "20w1s": 95.8, "20w5s": 98.9}},
}
TARGET_GAP = 0.5  # MAML family: within 0.5 points of the published number
TARGET = {"protonet": {"5w1s": 98.5, "5w5s": 99.5, "20w1s": 95.5, "20w5s": 98.5}}
TARGET.update({m: {k: round(v - TARGET_GAP, 1) for k, v in PUBLISHED[m]["accuracy"].items()}
               for m in ("maml", "fomaml", "anil")})


def model_stems(method: str) -> dict[str, str]:
    """{model name: file stem} of every model ``method`` can have: its config is ``configs/<stem>.yaml`` and it ships
    as ``fewzero/pretrained/<stem>.pt``. A MAML-family method has a 5-way and a 20-way model, meta-trained on 1-shot
    tasks, and may have a ``<way>-way-<shot>-shot`` model meta-trained on one setting (as Finn et al. do)."""
    from fewzero.pretrained import shipped_name

    if method == "protonet":
        return {"1-shot": "protonet_omniglot", "5-shot": "protonet_omniglot_5shot"}
    stems = {"5-way": shipped_name(method, "omniglot"), "20-way": shipped_name(method, "omniglot", 20)}
    stems.update({f"{way}-way-{shot}-shot": shipped_name(method, "omniglot", way, shot) for way, shot in SETTINGS})
    return stems


def models_of(method: str) -> dict[str, str]:
    """{model name: config path} of ``method``: its 5-way and 20-way (ProtoNet: 1-shot and 5-shot) models, and a
    model for one setting wherever ``configs/<method>_omniglot_<way>way_<shot>shot.yaml`` exists."""
    configs = {model: f"configs/{stem}.yaml" for model, stem in model_stems(method).items()}
    return {model: config for model, config in configs.items()
            if "-way-" not in model or (ROOT / config).is_file()}  # "20-way-5-shot": a model for one setting


def model_for(method: str, way: int, shot: int) -> str:
    """Which model of ``method`` serves the ``way``-way ``shot``-shot setting: the one meta-trained on that setting
    if there is one, else the model for that number of ways (ProtoNet: the model for that number of shots)."""
    if method == "protonet":
        return f"{shot}-shot"
    specific = f"{way}-way-{shot}-shot"
    return specific if specific in models_of(method) else f"{way}-way"


def table_of(method: str) -> str:
    """The results file a method writes to: ``paper_results/omniglot_<table>.{json,md}``."""
    return "protonet" if method == "protonet" else "maml"


def run_dir(runs: Path, method: str, model: str) -> Path:
    return runs / f"{method}_{model.replace('-', '')}"


def train_command(method: str, config: str, run: Path, data_root: str | None, quick: bool) -> list[str]:
    cmd = [sys.executable, "-m", "fewzero", "train", "--method", method, "--dataset", "omniglot",
           "--config", config, "--out", str(run)]
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
                prov["command"] = " ".join(["python", *train_command(method, config, run, data_root, quick)[1:]])
                prov["threads"] = threads
                write_atomic(run / "provenance.json", json.dumps(prov, indent=1))
            elif (run / "provenance.json").is_file():  # a killed run resumes: record when and at which commit
                prov = json.loads((run / "provenance.json").read_text())
                now = provenance()
                prov.setdefault("resumed", []).append({k: now[k] for k in ("commit", "date", "load_average")})
                write_atomic(run / "provenance.json", json.dumps(prov, indent=1))
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


def packaged_checkpoint(method: str, model: str) -> Path:
    """The checkpoint ``fewzero eval`` ships for one model (named as ``fewzero.pretrained`` looks them up)."""
    from fewzero.pretrained import PACKAGED

    path = PACKAGED / f"{model_stems(method)[model]}.pt"
    if not path.is_file():  # e.g. ProtoNet ships its 1-shot model only
        sys.exit(f"fewzero/pretrained ships no {method} {model} model: train it without --packaged")
    return path


def recorded_training(table_path: Path, method: str, models: dict[str, str]) -> dict[str, dict]:
    """The training records the table keeps for ``models`` of ``method`` (for re-evaluating packaged models)."""
    table = json.loads(table_path.read_text()) if table_path.is_file() else {}
    recorded = table.get("methods", {}).get(method, {}).get("training", {})
    missing = [model for model in models if model not in recorded]
    if missing:
        sys.exit(f"{_relative(table_path)} has no training record of {method} {', '.join(missing)}: "
                 f"train it without --packaged")
    return {model: recorded[model] for model in models}


def _relative(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _wait(process: subprocess.Popen, cmd: list[str]) -> None:
    if process.wait() != 0:
        sys.exit(f"training failed ({process.returncode}): {' '.join(cmd[1:])}")


def evaluate_models(method: str, checkpoints: dict[str, Path], data_root: str | None, episodes: int,
                    val_episodes: int = 200) -> dict:
    """{setting: result} for the settings the given models ({model: checkpoint}) serve, plus the evaluation's speed
    or memory record. A gradient-based learner is evaluated twice: with its training inner step size (Finn et al.'s
    protocol) and with the step size chosen on ``val_episodes`` validation episodes of the same setting."""
    import torch
    from inner_lr_selection import choose_test_inner_lr
    from omniglot_memory import trace_rss

    from fewzero.checkpoint import learner_from_checkpoint
    from fewzero.evaluate import evaluate
    from fewzero.learners.base import EmbeddingLearner
    from fewzero.train import episode_sampler, load_split

    results, test_set, val_set, extra = {}, None, None, {}
    for way, shot in SETTINGS:
        model = model_for(method, way, shot)
        if model not in checkpoints:
            continue
        learner, config, _ = learner_from_checkpoint(checkpoints[model])
        if hasattr(learner, "test_inner_lr"):  # the first evaluation is at the training step size
            learner.test_inner_lr = learner.inner_lr
        if test_set is None:
            test_set = load_split(config, config.test_subset, data_root)
        config.test_way, config.test_shot, config.test_query = way, shot, 15
        sampler = episode_sampler(test_set, config, episodes, config.test_seed)
        if isinstance(learner, EmbeddingLearner) or extra:
            report = evaluate(learner, test_set, sampler)
        else:  # the first setting of a gradient-based learner: also trace memory over the whole evaluation
            report, memory = trace_rss(partial(evaluate, learner, test_set, sampler))
            extra["eval_memory"] = {"setting": f"{way}w{shot}s", "episodes": episodes, **memory}
        print(report, flush=True)
        result = {
            "accuracy": report.accuracy, "ci95": report.ci95, "episodes": report.n_episodes, "f1": 100 * report.f1,
            "eval_seconds": report.seconds, "model": model, "test_inner_steps": getattr(learner, "test_inner_steps", None),
            "batch_norm": getattr(learner, "batch_norm", None), "checkpoint": _relative(checkpoints[model])}
        if hasattr(learner, "test_inner_lr"):
            if val_set is None:
                val_set = load_split(config, config.val_subset, data_root)
            chosen, scores = choose_test_inner_lr(learner, val_set, config, val_episodes)
            result["training_inner_lr"] = {k: result[k] for k in ("accuracy", "ci95", "f1")} | {"lr": learner.inner_lr}
            result["test_inner_lr"], result["validation"] = chosen, {"episodes": val_episodes, "accuracy": scores}
            if chosen != learner.inner_lr:
                report = evaluate(learner, test_set, sampler)
                print(f"test_inner_lr {chosen:g} (chosen on validation): {report}", flush=True)
                result.update({"accuracy": report.accuracy, "ci95": report.ci95, "f1": 100 * report.f1})
        results[f"{way}w{shot}s"] = result
        if isinstance(learner, EmbeddingLearner) and (way, shot) == (5, 1):
            fast = evaluate(learner, test_set, sampler, progress=False)
            slow = evaluate(learner, test_set, sampler, progress=False, reuse_embeddings=False)
            extra["eval_speed"] = {"episodes": episodes, "seconds_reuse_embeddings": fast.seconds,
                                   "seconds_per_episode_forward": slow.seconds, "ratio": slow.seconds / fast.seconds,
                                   "same_accuracy": abs(fast.accuracy - slow.accuracy) < 1e-6,
                                   "threads": torch.get_num_threads()}
    return {"results": results, **extra}


def merge(table: dict, method: str, trained: dict[str, dict], evaluated: dict, started: dict, note: str) -> dict:
    """``table`` with ``method``'s evaluated settings replaced; settings served by other models are kept."""
    keys = ("command", "train_seconds", "episodes_done", "best_episode", "best_val_accuracy", "stopped_early",
            "config", "provenance")
    entry = table.setdefault("methods", {}).setdefault(method, {"results": {}, "training": {}, "evaluation": {}})
    entry["results"].update(evaluated.pop("results"))
    entry["training"].update({model: {k: m[k] for k in keys} for model, m in trained.items()})
    entry["evaluation"][", ".join(trained)] = {**started, "finished": provenance()["date"], "note": note, **evaluated}
    entry["published"], entry["target"] = PUBLISHED[method], TARGET[method]
    return table


@contextmanager
def locked(path: Path):
    """Hold an exclusive lock on ``path`` (created if missing): runs of this script for different models of one
    table may finish at the same time, and each rewrites the table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _exit_on_sigterm(signum, frame) -> None:
    sys.exit(f"omniglot.py: stopped by signal {signum}")  # unwinds through train_models, which stops the training


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="protonet", choices=sorted(PUBLISHED))
    parser.add_argument("--models", default=None, help="comma-separated subset of the method's models, e.g. 5-way")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--runs", default="runs/benchmark", help="where the trained models go")
    parser.add_argument("--episodes", type=int, default=1000, help="test episodes per setting")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per training process")
    parser.add_argument("--parallel", action="store_true", help="train the models side by side")
    parser.add_argument("--note", default="", help="conditions worth recording (e.g. other jobs on the machine)")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny training, results not written")
    parser.add_argument("--render-only", action="store_true", help="rewrite the md from the json and stop")
    parser.add_argument("--packaged", action="store_true",
                        help="evaluate the checkpoints shipped in fewzero/pretrained (trained by an earlier run of this "
                             "script, whose training record the json keeps) instead of training")
    args = parser.parse_args()

    base = ROOT / "paper_results" / f"omniglot_{table_of(args.method)}"
    if args.render_only:
        write_atomic(base.with_suffix(".md"), render(json.loads(base.with_suffix(".json").read_text())))
        print(f"wrote {base}.md")
        return
    models = models_of(args.method)
    if args.models:
        unknown = set(args.models.split(",")) - set(models)
        if unknown:
            sys.exit(f"unknown model(s) {', '.join(sorted(unknown))} for {args.method}: choose from {', '.join(models)}")
        models = {m: c for m, c in models.items() if m in args.models.split(",")}
    started = provenance()
    runs = Path(args.runs) if not args.quick else Path(args.runs) / "quick"
    if args.packaged:
        trained = recorded_training(base.with_suffix(".json"), args.method, models)
        checkpoints = {model: packaged_checkpoint(args.method, model) for model in models}
    else:
        trained = train_models(args.method, models, runs, args.data_root, args.quick, args.threads, args.parallel)
        checkpoints = {model: run_dir(runs, args.method, model) / "best.pt" for model in models}
    evaluated = evaluate_models(args.method, checkpoints, args.data_root, 20 if args.quick else args.episodes,
                                10 if args.quick else 200)
    if args.quick:
        print(json.dumps({k: v for k, v in evaluated.items() if k != "results"}, indent=1))
        return
    with locked(runs / f".omniglot_{table_of(args.method)}.lock"):
        path = base.with_suffix(".json")
        table = json.loads(path.read_text()) if path.is_file() else {}
        table.update({"benchmark": "omniglot", "split": "vinyals", "test_episodes": args.episodes,
                      "queries_per_class": 15})
        merge(table, args.method, trained, evaluated, started, args.note)
        write_atomic(path, json.dumps(table, indent=1) + "\n")
        write_atomic(base.with_suffix(".md"), render(table))
    print(f"wrote {base}.json and {base}.md")


def _when(prov: dict) -> str:
    if "commit" in prov:
        threads = f", {prov['threads']} torch thread(s)" if prov.get("threads") else ""
        resumed = "".join(f"; resumed at commit {r['commit']}, {r['date']} (load average {r['load_average']})"
                          for r in prov.get("resumed", []))
        return (f"trained at commit {prov['commit']}, started {prov['date']} (load average {prov['load_average']}"
                f"{threads}){resumed}")
    return f"{prov['note']}; finished {prov['finished']}"


BATCH_NORM = {"transductive": "statistics of each test task's query set, as in Finn et al.; fewzero's default",
              "inductive": "statistics of each test task's support set only"}


def _memory_verdict(growth_mib: float) -> str:
    return "flat: no graph is kept beyond one task" if growth_mib < 8 else "growing: memory is retained across tasks"


INNER_LR_PROTOCOL = (
    "Test-time inner step size: \"ours\" adapts with the step size chosen for that setting on 200 validation "
    "episodes (Vinyals validation characters) from the training step size and five successive halves of it, a tie "
    "keeping the larger (benchmarks/inner_lr_selection.py); \"ours at the training inner lr\" adapts with the "
    "training step size, as "
    "Finn et al. do. Each model is meta-trained on 1-shot tasks and serves the 5-shot settings too, where the "
    "training step size can overshoot. Reproduce a row with `fewzero eval --method M --way W --shot S "
    "--set learner.test_inner_lr=LR`.")


def render(table: dict) -> str:
    """The markdown of a results table (all its methods)."""
    methods = table.get("methods", {})
    chosen_lr = any("training_inner_lr" in r for e in methods.values() for r in e["results"].values())
    lines = [f"# Omniglot few-shot accuracy: {', '.join(methods)}", "",
             (f"Vinyals split, test characters, {table.get('test_episodes')} fixed test episodes per setting, "
              f"{table.get('queries_per_class')} queries per class; accuracy in % with 95% confidence interval "
              "(1.96 * std / sqrt(N)). Every number below is written by `benchmarks/omniglot.py`."), "",
             "| method | setting | ours | " + ("ours at the training inner lr | test inner lr | " if chosen_lr else "")
             + "published | target | met | model | training time | tasks |",
             "| --- " * (11 if chosen_lr else 9) + "|"]
    for method, entry in methods.items():
        pub, target = entry["published"]["accuracy"], entry["target"]
        for way, shot in SETTINGS:
            key = f"{way}w{shot}s"
            r = entry["results"].get(key)
            if r is None:
                lines.append(f"| {method} | {key} | not run yet | " + ("| | " if chosen_lr else "")
                             + f"{pub[key]} | {target[key]} | | | | |")
                continue
            train = entry["training"][r["model"]]
            met = "yes" if r["accuracy"] >= target[key] else "no"
            lr_cells = ""
            if chosen_lr:
                base = r.get("training_inner_lr")
                lr_cells = (f"{base['accuracy']:.2f} ± {base['ci95']:.2f} (lr {base['lr']:g}) | {r['test_inner_lr']:g} | "
                            if base else "not measured | | ")
            lines.append(f"| {method} | {key} | {r['accuracy']:.2f} ± {r['ci95']:.2f} | {lr_cells}{pub[key]} | "
                         f"{target[key]} | {met} | {r['model']} | {train['train_seconds'] / 60:.1f} min | "
                         f"{train['episodes_done']} |")
    lines.append("")
    if chosen_lr:
        lines += [INNER_LR_PROTOCOL, ""]
    modes = sorted({t["config"].get("learner", {}).get("batch_norm") for e in methods.values()
                    for t in e["training"].values()} - {None})
    if modes:
        lines += [f"Batch norm at test time: {', '.join(modes)} ({'; '.join(BATCH_NORM[m] for m in modes)}).", ""]
    for method, entry in methods.items():
        lines.append(f"Published ({method}): {entry['published']['source']}.")
    lines += ["", "## Training", ""]
    for method, entry in methods.items():
        for name, t in entry["training"].items():
            c = t["config"]
            learner = c.get("learner", {})
            inner = (f"; inner lr {learner['inner_lr']}, {learner['inner_steps']} inner step(s) in training and "
                     f"{learner['test_inner_steps']} at test time, batch norm {learner['batch_norm']}"
                     if "inner_lr" in learner else "")
            batch = f", {c['meta_batch']} per meta-batch" if c.get("meta_batch", 1) > 1 else ""
            if c.get("workers", 1) > 1:
                batch += f" shared by {c['workers']} worker processes"
            lines.append(
                f"- {method} {name} model: `{t['command']}`; {c['backbone']}, {c['train_way']}-way "
                f"{c['train_shot']}-shot {c['train_query']}-query tasks{batch}, Adam lr {c['lr']} x{c['lr_gamma']} "
                f"every {c['lr_step']} tasks{inner}; {t['episodes_done']} tasks in {t['train_seconds'] / 60:.1f} min "
                f"(best validation {t['best_val_accuracy']:.2f} % at task {t['best_episode']}), seed {c['seed']}, "
                f"{c['precision']} training; " + _when(t["provenance"]) + ".")
    lines += ["", "## Evaluation", ""]
    for method, entry in methods.items():
        for models, e in entry["evaluation"].items():
            lines.append(f"- {method} ({models} model{'s' if ',' in models else ''}): `{e['command']}` at commit "
                         f"{e['commit']}, {e['date']} (finished {e['finished']}); {e['machine']}; load average at start "
                         f"{e['load_average']}." + (f" Note: {e['note']}" if e["note"] else ""))
            if "eval_speed" in e:
                s = e["eval_speed"]
                lines.append(f"  - speed: {s['episodes']} 5-way 1-shot test episodes take "
                             f"{s['seconds_reuse_embeddings']:.1f} s with the shared evaluator (each distinct test image "
                             f"embedded once), {s['seconds_per_episode_forward']:.1f} s embedding per episode: "
                             f"{s['ratio']:.2f}x, same accuracy: {s['same_accuracy']} ({s['threads']} threads).")
            if "eval_memory" in e:
                m = e["eval_memory"]
                lines.append(f"  - memory: peak resident set size in each tenth of the {m['episodes']} {m['setting']} "
                             f"test episodes (MiB): {', '.join(f'{p:.0f}' for p in m['peak_per_tenth_mib'])}; last "
                             f"tenth minus first: {m['growth_mib']:+.1f} MiB ({_memory_verdict(m['growth_mib'])}).")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
