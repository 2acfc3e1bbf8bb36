"""MAML++ ablation on 20-way 1-shot Omniglot: each component off in turn, same budget (56 minutes, one thread).

    python benchmarks/mamlpp_ablation.py                       # every variant (about 56 minutes each)
    python benchmarks/mamlpp_ablation.py --variants "no MSL"   # one variant (e.g. one per core, side by side)
    python benchmarks/mamlpp_ablation.py --minutes 15          # every variant, "all on" too, on a 15-minute budget
    python benchmarks/mamlpp_ablation.py --render-only         # rewrite the md from the json

Every variant trains with configs/mamlpp_omniglot_20way.yaml and one switch flipped (``VARIANTS``), then is
evaluated on the 1000 fixed 20-way 1-shot test episodes by the shared evaluator. The variant that sets nothing, the
config as shipped ("no DA": derivative-order annealing was turned off after this ablation and a 56-minute run
scored higher on validation episodes), is the model ``benchmarks/omniglot.py --method mamlpp`` trains
(runs/benchmark/mamlpp_20way), reused when it is there. Runs are resumable; results merge into
paper_results/mamlpp_ablation.{json,md} per variant.

``--minutes M`` shrinks the budget for every variant alike: the config's task count and validation interval are
scaled by M / 56 (so the cosine schedule, the multi-step-loss annealing and the switch to second order happen at
the same fractions of the run) and training stops after M minutes. Every variant, "all on" included, is trained
under that budget; the results go to paper_results/mamlpp_ablation_<M>min.{json,md}. Epochs and settings come from
the config (chosen before any test episode was seen), the checkpoint from validation episodes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_run import run_cli  # noqa: E402
from provenance import ROOT, portable, provenance  # noqa: E402

from fewzero.atomic import write_text  # noqa: E402

CONFIG = "configs/mamlpp_omniglot_20way.yaml"
DA_ON = "learner.derivative_order_annealing=true"  # the config ships with DA off (chosen on validation episodes)
VARIANTS = {  # label -> --set values: every component on, then one turned off
    "all on": [DA_ON],
    "no MSL (multi-step loss)": [DA_ON, "learner.multi_step_loss=false"],
    "no BNWB + BNRS (per-step batch norm)": [DA_ON, "learner.per_step_bn_weights=false",
                                             "learner.per_step_bn_statistics=false"],
    "no LSLR (learned step sizes)": [DA_ON, "learner.learned_inner_lr=false"],
    "no DA (second order from the start)": [],  # the config as shipped
    "no CA (constant outer lr)": [DA_ON, "lr_schedule=step", "lr_gamma=1.0"],
}
FULL_MINUTES = 56  # the config's max_minutes
FULL_EPISODES, FULL_VAL_EVERY, META_BATCH = 28000, 2000, 8  # the config's episodes, val_every and meta_batch


def budget_sets(minutes: int) -> list[str]:
    """The --set values that shrink the config's 56-minute budget to ``minutes`` (none for the full budget)."""
    if minutes == FULL_MINUTES:
        return []
    scale = minutes / FULL_MINUTES
    val_every = META_BATCH * max(1, round(FULL_VAL_EVERY * scale / META_BATCH))  # checkpoints between steps
    return [f"episodes={round(FULL_EPISODES * scale)}", f"val_every={val_every}", f"max_minutes={minutes}"]


def output_path(minutes: int) -> Path:
    name = "mamlpp_ablation" if minutes == FULL_MINUTES else f"mamlpp_ablation_{minutes}min"
    return ROOT / "paper_results" / name


def run_folder(label: str, runs: Path, minutes: int = FULL_MINUTES, seed: int = 0) -> Path:
    if not VARIANTS[label] and minutes == FULL_MINUTES and seed == 0:
        return ROOT / "runs" / "benchmark" / "mamlpp_20way"
    name = label.split(" (")[0].replace(" ", "_").replace("+", "and").lower() + (f"_seed{seed}" if seed else "")
    return runs / name if minutes == FULL_MINUTES else runs / f"{minutes}min" / name


def train(label: str, folder: Path, data_root: str | None, minutes: int = FULL_MINUTES, seed: int = 0) -> dict:
    """Train (or resume, or reuse) one variant with the real CLI; its metrics.json with the command and provenance."""
    sets = VARIANTS[label] + budget_sets(minutes) + ([f"seed={seed}"] if seed else [])
    command = ["fewzero", "train", "--method", "mamlpp", "--dataset", "omniglot", "--config", CONFIG, "--out",
               portable(str(folder))] + [arg for value in sets for arg in ("--set", value)]
    if not (folder / "metrics.json").is_file() and not VARIANTS[label] and minutes == FULL_MINUTES and seed == 0:
        sys.exit(f"{folder} has no finished run: `python benchmarks/omniglot.py --method mamlpp --models 20-way`")
    prov = run_cli(command, folder, data_root, threads=1)
    metrics = json.loads((folder / "metrics.json").read_text())
    return {"command": prov["command"], "provenance": prov,
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


def render(table: dict, minutes: int = FULL_MINUTES) -> str:
    budget = (f"{minutes} minutes of meta-training on one CPU thread" if minutes == FULL_MINUTES else
              f"{minutes} minutes of meta-training on one CPU thread, the config's 56-minute budget scaled down "
              f"(`--minutes {minutes}`: {', '.join(budget_sets(minutes))}; every variant, \"all on\" included, "
              f"trained under it, one seed each)")
    lines = ["# MAML++ ablation: Omniglot 20-way 1-shot", "",
             "Each row turns one MAML++ component off and keeps the others on (configs/mamlpp_omniglot_20way.yaml "
             "otherwise; the config itself ships with derivative-order annealing off, the \"no DA\" row, chosen on "
             "validation episodes after this ablation), same budget: "
             f"{budget}. Test: 1000 fixed 20-way 1-shot episodes, 15 queries per "
             "class, 95 % CI. Written by `benchmarks/mamlpp_ablation.py`.", "",
             "| variant | test accuracy | tasks seen | minutes | best validation |", "| --- | --- | --- | --- | --- |"]
    for label in VARIANTS:
        row = table["variants"].get(label)
        if row is None:
            lines.append(f"| {label} | not run yet | | | |")
            continue
        lines.append(f"| {label} | {row['accuracy']:.2f} ± {row['ci95']:.2f} | {row['episodes_done']} | "
                     f"{row['train_seconds'] / 60:.1f} | {row['best_val_accuracy']:.2f} |")
    repeats = table.get("repeats", {})
    if repeats:
        lines += ["", "## Seed-to-seed spread", "",
                  "The same variant trained again with other seeds (`--seed`), same budget, same test episodes:", ""]
        for label, by_seed in repeats.items():
            rows = {**({"0": table["variants"][label]} if label in table["variants"] else {}), **by_seed}
            scores = [row["accuracy"] for row in rows.values()]
            lines.append(f"- {label}: " + ", ".join(f"seed {seed} {row['accuracy']:.2f} ± {row['ci95']:.2f}"
                                                     for seed, row in sorted(rows.items())) +
                         f"; max − min {max(scores) - min(scores):.2f} points")
    runs = [(label, row) for label, row in table["variants"].items()] + [
        (f"{label}, seed {seed}", row) for label, by_seed in repeats.items() for seed, row in sorted(by_seed.items())]
    lines += ["", "## Runs", ""]
    for label, row in runs:
        p = row["provenance"]
        lines.append(f"- {label}: `{portable(row['command'])}`; commit {p.get('commit', '?')}, {p.get('date', '?')} "
                     f"({p.get('machine', '')}; load average {p.get('load_average', '?')}); evaluated by "
                     f"`{row['evaluated']['command']}` at commit {row['evaluated']['commit']}, {row['evaluated']['date']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "mamlpp_ablation"))
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--minutes", type=int, default=FULL_MINUTES,
                        help=f"training budget per variant (default {FULL_MINUTES}, the config's)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (other than 0: a repeat, for the spread)")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.minutes <= FULL_MINUTES:
        parser.error(f"--minutes must be between 1 and {FULL_MINUTES}")
    out = output_path(args.minutes)
    path = out.with_suffix(".json")
    table = json.loads(path.read_text()) if path.is_file() else {"variants": {}}
    if not args.render_only:
        for label in args.variants:
            folder = run_folder(label, Path(args.runs), args.minutes, args.seed)
            row = train(label, folder, args.data_root, args.minutes, args.seed)
            row.update(evaluate_variant(folder, args.data_root, args.episodes), evaluated=provenance())
            table = json.loads(path.read_text()) if path.is_file() else {"variants": {}}  # others may have written
            if args.seed:
                table.setdefault("repeats", {}).setdefault(label, {})[str(args.seed)] = row
            else:
                table["variants"][label] = row
            write_text(path, json.dumps(table, indent=1) + "\n")
    write_text(out.with_suffix(".md"), render(table, args.minutes))
    print(f"wrote {out}.md")


if __name__ == "__main__":
    main()
