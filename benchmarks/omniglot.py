"""Reproduce the Omniglot few-shot table (Vinyals split, 1000 test episodes, 15 queries per class).

    python benchmarks/omniglot.py --method protonet            # trains 2 models (1-shot, 5-shot), ~1 hour on 2 CPUs

Each model is trained with ``fewzero train`` and a config in ``configs/`` (the 1-shot model serves 5w1s and 20w1s,
the 5-shot model 5w5s and 20w5s, as in Snell et al. 2017), then evaluated by the shared evaluator. Writes
``paper_results/omniglot_<method>.{json,md}`` with provenance and the published numbers beside ours.
Runs already finished under ``--runs`` are reused; a killed run is resumed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import ROOT, provenance, write_atomic  # noqa: E402

SETTINGS = [(5, 1), (5, 5), (20, 1), (20, 5)]
PUBLISHED = {
    "protonet": {"source": "Snell et al., Prototypical Networks for Few-shot Learning, NeurIPS 2017, Table 1",
                 "accuracy": {"5w1s": 98.8, "5w5s": 99.7, "20w1s": 96.0, "20w5s": 98.9}},
}
TARGET = {"protonet": {"5w1s": 98.5, "5w5s": 99.5, "20w1s": 95.5, "20w5s": 98.5}}
CONFIGS = {"protonet": {1: "configs/protonet_omniglot.yaml", 5: "configs/protonet_omniglot_5shot.yaml"}}


def train_model(method: str, config: str, run: Path, data_root: str | None, quick: bool) -> dict:
    """Train with the real CLI (or reuse a finished run) and return its metrics.json with the run's provenance."""
    if not (run / "metrics.json").is_file() or (run / "last.pt").is_file() and quick:
        if not (run / "last.pt").is_file():
            write_atomic(run / "provenance.json", json.dumps(provenance(), indent=1))
        cmd = [sys.executable, "-m", "fewzero", "train", "--method", method, "--dataset", "omniglot",
               "--config", config, "--out", str(run)]
        if (run / "last.pt").is_file():
            cmd.append("--resume")
        if data_root:
            cmd += ["--data-root", data_root]
        if quick:
            cmd += ["--episodes", "20", "--train-way", "10", "--set", "val_every=10", "--set", "val_episodes=20"]
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["command"] = f"fewzero train --method {method} --dataset omniglot --config {config} --out {run}"
    if (run / "provenance.json").is_file():
        metrics["provenance"] = json.loads((run / "provenance.json").read_text())
    else:
        finished = datetime.datetime.fromtimestamp((run / "metrics.json").stat().st_mtime, datetime.timezone.utc)
        metrics["provenance"] = {"note": "run reused; its commit was not recorded when it was trained",
                                 "finished": finished.strftime("%Y-%m-%d %H:%M UTC")}
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="protonet", choices=sorted(CONFIGS))
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--runs", default="runs/benchmark", help="where the trained models go")
    parser.add_argument("--episodes", type=int, default=1000, help="test episodes per setting")
    parser.add_argument("--note", default="", help="conditions worth recording (e.g. other jobs on the machine)")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny training, results not written")
    args = parser.parse_args()

    import torch

    from fewzero.checkpoint import learner_from_checkpoint
    from fewzero.evaluate import evaluate
    from fewzero.train import episode_sampler, load_split

    started = provenance()  # the commit and command the models were trained with
    runs = Path(args.runs)
    models = {shot: train_model(args.method, cfg, runs / f"{args.method}_{shot}shot", args.data_root, args.quick)
              for shot, cfg in CONFIGS[args.method].items()}
    results = {}
    test_set = None
    for way, shot in SETTINGS:
        learner, config, _ = learner_from_checkpoint(runs / f"{args.method}_{shot}shot" / "best.pt")
        if test_set is None:
            test_set = load_split(config, config.test_subset, args.data_root)
        config.test_way, config.test_shot, config.test_query = way, shot, 15
        sampler = episode_sampler(test_set, config, args.episodes, config.test_seed)
        report = evaluate(learner, test_set, sampler)
        print(report, flush=True)
        results[f"{way}w{shot}s"] = {"accuracy": report.accuracy, "ci95": report.ci95, "episodes": report.n_episodes,
                                     "f1": 100 * report.f1, "eval_seconds": report.seconds,
                                     "model": f"{shot}-shot"}
    # Evaluation speed: the shared evaluator on 1000 5w1s episodes, with and without embedding reuse.
    learner, config, _ = learner_from_checkpoint(runs / f"{args.method}_1shot" / "best.pt")
    config.test_way, config.test_shot, config.test_query = 5, 1, 15
    sampler = episode_sampler(test_set, config, args.episodes, config.test_seed)
    fast = evaluate(learner, test_set, sampler, progress=False)
    slow = evaluate(learner, test_set, sampler, progress=False, reuse_embeddings=False)
    speed = {"episodes": args.episodes, "seconds_reuse_embeddings": fast.seconds,
             "seconds_per_episode_forward": slow.seconds, "ratio": slow.seconds / fast.seconds,
             "same_accuracy": abs(fast.accuracy - slow.accuracy) < 1e-6, "threads": torch.get_num_threads()}
    if args.quick:
        print(json.dumps(speed, indent=1))
        return
    out = {"benchmark": "omniglot", "method": args.method, "split": "vinyals", "test_episodes": args.episodes,
           "queries_per_class": 15, "results": results, "training": {
               f"{s}-shot": {k: m[k] for k in ("command", "train_seconds", "episodes_done", "best_episode",
                                               "best_val_accuracy", "stopped_early", "config", "provenance")}
               for s, m in models.items()},
           "eval_speed": speed, "published": PUBLISHED[args.method], "target": TARGET[args.method],
           "provenance": {**started, "finished": provenance()["date"]}, "note": args.note}
    base = ROOT / "paper_results" / f"omniglot_{args.method}"
    write_atomic(base.with_suffix(".json"), json.dumps(out, indent=1) + "\n")
    write_atomic(base.with_suffix(".md"), render(out))
    print(f"wrote {base}.json and {base}.md")


def _when(prov: dict) -> str:
    if "commit" in prov:
        return f"trained at commit {prov['commit']}, started {prov['date']} (load average {prov['load_average']})"
    return f"{prov['note']}; finished {prov['finished']}"


def render(out: dict) -> str:
    pub, prov = out["published"], out["provenance"]
    lines = [f"# Omniglot few-shot accuracy: {out['method']}", "",
             f"Vinyals split, test characters, {out['test_episodes']} fixed test episodes per setting, "
             f"{out['queries_per_class']} queries per class; accuracy in % with 95% confidence interval "
             "(1.96 * std / sqrt(N)).", "",
             "| setting | ours | published | target | model | training time | episodes |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, r in out["results"].items():
        train = out["training"][r["model"]]
        lines.append(f"| {key} | {r['accuracy']:.2f} ± {r['ci95']:.2f} | {pub['accuracy'][key]} | "
                     f"{out['target'][key]} | {r['model']} | {train['train_seconds'] / 60:.1f} min | "
                     f"{train['episodes_done']} |")
    s = out["eval_speed"]
    lines += ["", f"Published: {pub['source']}.", "",
              "## Training", ""]
    for name, t in out["training"].items():
        c = t["config"]
        lines.append(f"- {name} model: `{t['command']}`; {c['train_way']}-way {c['train_shot']}-shot "
                     f"{c['train_query']}-query episodes, Adam lr {c['lr']} x{c['lr_gamma']} every {c['lr_step']} "
                     f"episodes, {t['episodes_done']} episodes in {t['train_seconds'] / 60:.1f} min "
                     f"(best validation {t['best_val_accuracy']:.2f} % at episode {t['best_episode']}), seed {c['seed']}, "
                     f"{c['precision']} training; " + _when(t["provenance"]) + ".")
    lines += ["", "## Evaluation speed", "",
              f"{s['episodes']} 5-way 1-shot test episodes: {s['seconds_reuse_embeddings']:.1f} s with the shared "
              f"evaluator (each distinct test image embedded once), {s['seconds_per_episode_forward']:.1f} s embedding "
              f"per episode: {s['ratio']:.2f}x, same accuracy: {s['same_accuracy']} ({s['threads']} threads).", "",
              "## Provenance", "", f"- command: `{prov['command']}`", f"- commit: {prov['commit']}",
              f"- date: {prov['date']} (finished {prov['finished']})", f"- machine: {prov['machine']}",
              f"- load average at start (1/5/15 min): {prov['load_average']}"]
    if out["note"]:
        lines.append(f"- note: {out['note']}")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
