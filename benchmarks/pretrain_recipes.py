"""Pretraining recipes for the transfer learners, compared on Omniglot *validation* episodes only.

    python benchmarks/pretrain_recipes.py --threads 1      # trains each candidate (resumable), scores all
    python benchmarks/pretrain_recipes.py --recipes LABEL  # one candidate; the table keeps the others' rows
    python benchmarks/pretrain_recipes.py --render-only    # rewrite the md from the json

Every candidate config in ``CANDIDATES`` (trained here with ``fewzero pretrain``) is scored by SimpleShot, with
L2 and centred-L2 normalisation, on 1000 fixed 5-way and 20-way 1-shot episodes of the validation characters. The
episodes use seed 1, not the seed-0 episodes each run chose its best epoch on. The recipe with the highest mean
over these cells is the one to ship; no test episode is read here (the test table is
``benchmarks/omniglot_transfer.py``, run with ``--pretrained`` on the chosen backbone).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli_run import run_cli
from provenance import ROOT, portable, provenance
from result_cache import Cache

sys.path.insert(0, str(ROOT))
from fewzero.atomic import write_text  # noqa: E402

# label -> config. The first run (paper_results/pretrain_recipes.json) scored the then shipped backbone of the first
# recipe under the label "shipped (configs/pretrain_omniglot.yaml)"; the shift recipe's config was then named
# configs/pretrain_omniglot_shift.yaml (now configs/pretrain_omniglot_12ep.yaml), and the 24-epoch recipe's
# configs/pretrain_omniglot_24ep.yaml (now the default configs/pretrain_omniglot.yaml). A rerun trains the first
# recipe from its config.
CANDIDATES = {
    "first recipe (configs/pretrain_omniglot_first.yaml)": "configs/pretrain_omniglot_first.yaml",
    "shift 2 px, fp32, 12 epochs": "configs/pretrain_omniglot_12ep.yaml",
    "shift 2 px, fp32, 24 epochs": "configs/pretrain_omniglot.yaml",
    "shift 2 px, cosine head, fp32, 12 epochs": "configs/pretrain_omniglot_cosine.yaml",
}
CELLS = [(5, 1, "l2n"), (5, 1, "cl2n"), (20, 1, "l2n"), (20, 1, "cl2n")]
VAL_EPISODES, VAL_SEED = 1000, 1
OUT = ROOT / "paper_results" / "pretrain_recipes"


def run_folder(label: str, runs: Path) -> Path:
    return runs / label.split(" (")[0].replace(" ", "_").replace(",", "").lower()


def train(label: str, runs: Path, data_root: str | None, threads: int) -> tuple[Path, dict]:
    """The candidate's best checkpoint and its training record (trained, resumed or reused)."""
    folder = run_folder(label, runs)
    command = ["fewzero", "pretrain", "--backbone", "conv4", "--dataset", "omniglot", "--config", CANDIDATES[label],
               "--out", portable(str(folder))]
    prov = run_cli(command, folder, data_root, threads)
    metrics = json.loads((folder / "metrics.json").read_text())
    return folder / "best.pt", {"command": prov["command"], "provenance": prov,
                                **{k: metrics[k] for k in ("best_epoch", "epochs_done", "train_seconds",
                                                           "best_val_accuracy")}}


def score(checkpoint: Path, way: int, shot: int, normalisation: str, val_set, cache: Cache) -> dict:
    from fewzero.checkpoint import learner_from_checkpoint
    from fewzero.evaluate import evaluate
    from fewzero.sampling import EpisodeSampler

    def run():
        learner = learner_from_checkpoint(checkpoint, method="simpleshot",
                                          learner_settings={"normalisation": normalisation})[0]
        sampler = EpisodeSampler(val_set.labels, way, shot, 15, VAL_EPISODES, seed=VAL_SEED,
                                 class_names=val_set.class_names)
        report = evaluate(learner, val_set, sampler, progress=False)
        return {"accuracy": report.accuracy, "ci95": report.ci95}
    key = json.dumps([portable(str(checkpoint)), checkpoint.stat().st_mtime_ns, way, shot, normalisation])
    return cache.get_or_run(key, run)


def scoring_run(row: dict, report: dict) -> dict:
    """The run that scored a row: its own record, or (rows written before rows kept one) the report's."""
    return row.get("scored") or {**report["provenance"], "note": report.get("note", "")}


def merged(earlier: dict | None, scored: dict[str, dict]) -> dict[str, dict]:
    """The table's rows after scoring the recipes in ``scored``: the ``earlier`` report's rows in their order (each
    with the scoring run that wrote it, ``scored``), those scored again replaced, then the new ones. A run of some
    ``--recipes`` thus adds to the table instead of replacing it."""
    if earlier is None:
        return dict(scored)
    rows = {label: scored.get(label) or {**row, "scored": scoring_run(row, earlier)}
            for label, row in earlier["recipes"].items()}
    return {**rows, **scored}


def render(report: dict) -> str:
    heads = [f"{way}w{shot}s {norm}" for way, shot, norm in CELLS]
    lines = ["# Pretraining recipes for the transfer learners (Omniglot, validation episodes only)", "",
             f"SimpleShot accuracy (%) ± 95 % CI on {VAL_EPISODES} fixed episodes (seed {VAL_SEED}) of the Vinyals "
             "validation characters, 15 queries per class; l2n = L2-normalised features, cl2n = centred on the base "
             "classes' mean, then L2-normalised. Written by `benchmarks/pretrain_recipes.py`; no test episode is "
             "read.", "",
             "| recipe | " + " | ".join(heads) + " | mean | epochs (best) | minutes |",
             "| --- | " + " | ".join("---" for _ in heads) + " | --- | --- | --- |"]
    for label, row in report["recipes"].items():
        cells = [row["cells"][h] for h in heads]
        training = row["training"]
        epochs = (f"{training['epochs_done']} ({training['best_epoch']})" if "epochs_done" in training else
                  "see its provenance")
        minutes = f"{training['train_seconds'] / 60:.1f}" if "train_seconds" in training else "–"
        lines.append(f"| {label} | " + " | ".join(f"{c['accuracy']:.2f} ± {c['ci95']:.2f}" for c in cells)
                     + f" | {row['mean']:.2f} | {epochs} | {minutes} |")
    lines += ["", f"Highest mean: **{report['chosen']}**.", "", "## Runs", ""]
    for label, row in report["recipes"].items():
        training = row["training"]
        where = training.get("provenance", {})
        lines.append(f"- {label}: `{portable(training['command'])}`" + (
            f"; commit {where.get('commit', '?')}, {where.get('date', '?')} ({where.get('machine', '')}, "
            f"{where.get('threads')} thread(s); load average {where.get('load_average', '?')})" if where else ""))
    lines.append("")
    scorings: dict[str, list[str]] = {}  # one line per scoring run, naming the rows it wrote
    for label, row in report["recipes"].items():
        p = scoring_run(row, report)
        line = (f"`{p['command']}` at commit {p['commit']}, {p['date']} ({p['machine']})."
                + (f" Note: {p['note']}" if p.get("note") else ""))
        scorings.setdefault(line, []).append(label)
    for line, labels in scorings.items():
        lines.append("Scored by " + line if len(scorings) == 1 else f"- {'; '.join(labels)}: scored by {line}")
    return "\n".join(lines + [""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "pretrain_recipes")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training and scoring")
    parser.add_argument("--recipes", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--note", default="")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    if args.render_only:
        write_text(OUT.with_suffix(".md"), render(json.loads(OUT.with_suffix(".json").read_text())))
        return
    import torch

    from fewzero.config import load_config
    from fewzero.train import load_split

    torch.set_num_threads(args.threads)
    val_set = load_split(load_config(None, "omniglot", overrides={"method": "simpleshot"}), "val", args.data_root)
    cache = Cache(args.runs / "scores.json")
    recipes = {}
    for label in args.recipes:
        checkpoint, training = train(label, args.runs, args.data_root, args.threads)
        cells = {f"{way}w{shot}s {norm}": score(checkpoint, way, shot, norm, val_set, cache)
                 for way, shot, norm in CELLS}
        recipes[label] = {"training": training, "cells": cells,
                          "mean": sum(c["accuracy"] for c in cells.values()) / len(cells),
                          "scored": {**provenance(), "note": args.note}}
    earlier = json.loads(OUT.with_suffix(".json").read_text()) if OUT.with_suffix(".json").is_file() else None
    recipes = merged(earlier, recipes)
    report = {"recipes": recipes, "chosen": max(recipes, key=lambda label: recipes[label]["mean"]),
              "episodes": VAL_EPISODES, "seed": VAL_SEED, "provenance": provenance(), "note": args.note}
    write_text(OUT.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    write_text(OUT.with_suffix(".md"), render(report))
    print(f"wrote {OUT}.json and .md")


if __name__ == "__main__":
    main()
