"""MAML++ ablation on 20-way 1-shot Omniglot: each component off in turn, same budget (56 minutes, one thread).

    python benchmarks/mamlpp_ablation.py                       # every variant (about 56 minutes each)
    python benchmarks/mamlpp_ablation.py --variants "no MSL"   # one variant (e.g. one per core, side by side)
    python benchmarks/mamlpp_ablation.py --render-only         # rewrite the md from the json

Every variant trains with configs/mamlpp_omniglot_20way.yaml and one switch flipped (``VARIANTS``), then is
evaluated on the 1000 fixed 20-way 1-shot test episodes by the shared evaluator. "all on" is the model
``benchmarks/omniglot.py --method mamlpp`` trains (runs/benchmark/mamlpp_20way), reused when it is there. Runs are
resumable; results merge into paper_results/mamlpp_ablation.{json,md} per variant. Epochs and settings come from
the config (chosen before any test episode was seen), the checkpoint from validation episodes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import ROOT, provenance  # noqa: E402

from fewzero.atomic import write_text  # noqa: E402

CONFIG = "configs/mamlpp_omniglot_20way.yaml"
VARIANTS = {  # label -> --set values (none: every component on)
    "all on": [],
    "no MSL (multi-step loss)": ["learner.multi_step_loss=false"],
    "no BNWB + BNRS (per-step batch norm)": ["learner.per_step_bn_weights=false",
                                             "learner.per_step_bn_statistics=false"],
    "no LSLR (learned step sizes)": ["learner.learned_inner_lr=false"],
    "no DA (second order from the start)": ["learner.derivative_order_annealing=false"],
    "no CA (constant outer lr)": ["lr_schedule=step", "lr_gamma=1.0"],
}
OUT = ROOT / "paper_results" / "mamlpp_ablation"


def run_folder(label: str, runs: Path) -> Path:
    if not VARIANTS[label]:
        return ROOT / "runs" / "benchmark" / "mamlpp_20way"
    return runs / label.split(" (")[0].replace(" ", "_").replace("+", "and").lower()


def train(label: str, folder: Path, data_root: str | None) -> dict:
    """Train (or resume, or reuse) one variant with the real CLI; its metrics.json with the command and provenance."""
    command = ["fewzero", "train", "--method", "mamlpp", "--dataset", "omniglot", "--config", CONFIG, "--out",
               str(folder)] + [arg for value in VARIANTS[label] for arg in ("--set", value)]
    if not (folder / "metrics.json").is_file():
        if not VARIANTS[label]:
            sys.exit(f"{folder} has no finished run: `python benchmarks/omniglot.py --method mamlpp --models 20-way`")
        resume = (folder / "last.pt").is_file()
        if not resume:
            folder.mkdir(parents=True, exist_ok=True)
            write_text(folder / "provenance.json", json.dumps({**provenance(), "command": " ".join(command)}, indent=1))
        full = [sys.executable, "-m", *command] + (["--resume"] if resume else []) + (
            ["--data-root", data_root] if data_root else [])
        print("$", " ".join(full[2:]), flush=True)
        subprocess.run(full, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    metrics = json.loads((folder / "metrics.json").read_text())
    prov = json.loads((folder / "provenance.json").read_text()) if (folder / "provenance.json").is_file() else {}
    return {"command": prov.get("command", " ".join(command)), "provenance": prov,
            **{k: metrics[k] for k in ("episodes_done", "train_seconds", "best_val_accuracy", "best_episode")}}


def evaluate_variant(folder: Path, data_root: str | None, episodes: int) -> dict:
    import torch

    from fewzero.checkpoint import learner_from_checkpoint
    from fewzero.evaluate import evaluate
    from fewzero.train import episode_sampler, load_split

    torch.set_num_threads(1)
    learner, config, _ = learner_from_checkpoint(folder / "best.pt")
    test_set = load_split(config, config.test_subset, data_root)
    report = evaluate(learner, test_set, episode_sampler(test_set, config, episodes, config.test_seed))
    return {"accuracy": report.accuracy, "ci95": report.ci95, "episodes": report.n_episodes}


def render(table: dict) -> str:
    lines = ["# MAML++ ablation: Omniglot 20-way 1-shot", "",
             "Each row turns one MAML++ component off (configs/mamlpp_omniglot_20way.yaml otherwise), same budget: "
             "56 minutes of meta-training on one CPU thread. Test: 1000 fixed 20-way 1-shot episodes, 15 queries per "
             "class, 95 % CI. Written by `benchmarks/mamlpp_ablation.py`.", "",
             "| variant | test accuracy | tasks seen | minutes | best validation |", "| --- | --- | --- | --- | --- |"]
    for label in VARIANTS:
        row = table["variants"].get(label)
        if row is None:
            lines.append(f"| {label} | not run yet | | | |")
            continue
        lines.append(f"| {label} | {row['accuracy']:.2f} ± {row['ci95']:.2f} | {row['episodes_done']} | "
                     f"{row['train_seconds'] / 60:.1f} | {row['best_val_accuracy']:.2f} |")
    lines += ["", "## Runs", ""]
    for label, row in table["variants"].items():
        p = row["provenance"]
        lines.append(f"- {label}: `{row['command']}`; commit {p.get('commit', '?')}, {p.get('date', '?')} "
                     f"({p.get('machine', '')}; load average {p.get('load_average', '?')}); evaluated by "
                     f"`{row['evaluated']['command']}` at commit {row['evaluated']['commit']}, {row['evaluated']['date']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "mamlpp_ablation"))
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    path = OUT.with_suffix(".json")
    table = json.loads(path.read_text()) if path.is_file() else {"variants": {}}
    if not args.render_only:
        for label in args.variants:
            folder = run_folder(label, Path(args.runs))
            row = train(label, folder, args.data_root)
            row.update(evaluate_variant(folder, args.data_root, args.episodes), evaluated=provenance())
            table = json.loads(path.read_text()) if path.is_file() else {"variants": {}}  # others may have written
            table["variants"][label] = row
            write_text(path, json.dumps(table, indent=1) + "\n")
    write_text(OUT.with_suffix(".md"), render(table))
    print(f"wrote {OUT}.md")


if __name__ == "__main__":
    main()
