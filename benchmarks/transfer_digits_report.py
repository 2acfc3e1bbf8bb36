"""The summary, markdown table and figures of the digits transfer study (``benchmarks/transfer_digits.py``).

Everything here is derived from the per-fit records the study computed with ``fewzero.evaluate.evaluate``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from provenance import portable

from fewzero.atomic import atomic_path


def _test_metrics(row: dict) -> dict:
    """Mean test accuracy / precision / recall / F1 over the seeds and the confusion matrix summed over them."""
    tests = row["test"]
    return {"accuracy": row["mean"], "std": row["std"],
            **{k: float(np.mean([t[k] for t in tests])) for k in ("precision", "recall", "f1")},
            "confusion": np.sum([t["confusion"] for t in tests], axis=0).tolist()}


def summarise(domains: dict) -> dict:
    """Per domain and n: the setting with the best mean test accuracy (descriptive), the setting and the
    fine-tuning setting chosen on validation, whether that fine-tuning beats both scratch and the linear probe,
    and the first n at which training from scratch beats the linear probe."""
    summary = {}
    for domain, result in domains.items():
        settings = result["settings"]
        shots = sorted({int(n) for rows in settings.values() for n in rows})
        per_n = {}
        for n in shots:
            rows = {name: s[str(n)] for name, s in settings.items() if str(n) in s}
            winner = max(rows, key=lambda k: rows[k]["mean"])
            on_val = max(rows, key=lambda k: rows[k]["val_accuracy"])  # ties: the first in setting order
            fine = [k for k in rows if k.startswith("fine-tune")]
            ft = max(fine, key=lambda k: rows[k]["val_accuracy"]) if fine else None
            baselines = [rows[k]["mean"] for k in ("scratch", "linear probe") if k in rows]
            per_n[str(n)] = {
                "winner": winner, "winner_accuracy": rows[winner]["mean"], "best_on_val": on_val,
                "best_on_val_test": _test_metrics(rows[on_val]), "fine_tune_on_val": ft,
                "fine_tune_on_val_accuracy": rows[ft]["mean"] if ft else None,
                "fine_tune_beats_scratch_and_probe": (rows[ft]["mean"] > max(baselines))
                if ft and len(baselines) == 2 else None}
        both = "scratch" in settings and "linear probe" in settings
        crossover = next((n for n in shots if both and str(n) in settings["scratch"] and str(n) in
                          settings["linear probe"] and settings["scratch"][str(n)]["mean"]
                          > settings["linear probe"][str(n)]["mean"]), None)
        summary[domain] = {"shots": shots, "per_n": per_n, "scratch_beats_probe_from_n": crossover,
                           "comparable": both}
    return summary


def crossover_sentence(domain: str, s: dict) -> str:
    """One or two sentences: the winner at each n, and whether fine-tuning (k chosen on val) beats both baselines."""
    wins = "; ".join(f"n={n}: {p['winner']} ({p['winner_accuracy']:.1f} %)" for n, p in s["per_n"].items())
    text = f"Highest mean test accuracy on {domain}: {wins}."
    if s["comparable"]:
        first = s["scratch_beats_probe_from_n"]
        text += (f" Training from scratch first beats the linear probe at n={first}." if first is not None else
                 " Training from scratch never beats the linear probe here.")
    beats = [n for n, p in s["per_n"].items() if p["fine_tune_beats_scratch_and_probe"]]
    judged = [n for n, p in s["per_n"].items() if p["fine_tune_beats_scratch_and_probe"] is not None]
    if judged:
        chosen = ", ".join(f"{p['fine_tune_on_val']} at n={n}" for n, p in s["per_n"].items())
        text += (f" Fine-tuning with the frozen blocks and learning rates chosen on validation ({chosen}) beats both "
                 f"scratch and the linear probe at n = {', '.join(beats)}." if beats else
                 f" Fine-tuning with the setting chosen on validation ({chosen}) never beats both scratch and the "
                 f"linear probe.")
    return text


def _cell(row: dict | None, bold: bool) -> str:
    if row is None:
        return "–"
    text = f"{row['mean']:.1f} ± {row['std']:.1f}"
    return f"**{text}**" if bold else text


def render(report: dict) -> str:
    c, prov = report["config"], report["provenance"]
    n_seeds = len(c["seeds"])
    lines = ["# Feature extraction vs fine-tuning on a new domain: Omniglot Conv-4 -> handwritten digits", "",
             f"Source: the Conv-4 pretrained on Omniglot by `fewzero pretrain` (`{c['checkpoint']}`, sha256 "
             f"{str(c['checkpoint_sha256'])[:12]}...). Targets: {', '.join(c['targets'])} (`fewzero.data.digits`, "
             f"28x28, bright strokes on dark as Omniglot). n labelled training images per class, {n_seeds} labelled "
             f"subsets (seeds {', '.join(map(str, c['seeds']))}); 10-way test accuracy in %, mean ± sample std over "
             f"the seeds; the best mean per n in bold. Learning rate and steps were chosen per setting and n from "
             f"lr {c['grid']['lr']} x steps {c['grid']['steps']} by validation accuracy with the seed-"
             f"{c['seeds'][0]} labelled subset (ties keep fewer steps, then the lower lr); the test subset only "
             f"gives the numbers below. Every number is computed by `fewzero.evaluate.evaluate` on one fixed episode "
             f"(support = the labelled images, query = the whole balanced evaluation subset"
             + (f", cut to {c['eval_per_class']} per class" if c["eval_per_class"] else "") + ").", "",
             "Settings: **scratch** = the same Conv-4 randomly initialised, all blocks trained; **linear probe** = "
             "all 4 blocks frozen, only the linear head trained; **fine-tune k=K** = the first K blocks frozen "
             f"(weights and batch-norm statistics), the rest and the head trained with one learning rate; **disc.** "
             f"= discriminative learning rates, each block {c['lr_decay']} times the rate of the block above it (the "
             f"head has the chosen lr). SGD with momentum {c['momentum']}, weight decay {c['weight_decay']}, head "
             f"started at zero; full batch when the support set has at most {c['batch_size']} images, else "
             f"mini-batches of {c['batch_size']} (in a seeded random order, epoch by epoch).", ""]
    for domain, result in report["domains"].items():
        s, settings = report["summary"][domain], result["settings"]
        sizes = result["sizes"]
        lines += [f"## {domain}", "",
                  f"Split (seed {c['split_seed']}): {sizes['train']} train / {sizes['val']} val / {sizes['test']} test "
                  "images.", "", "| setting | " + " | ".join(f"n={n}" for n in s["shots"]) + " |",
                  "| --- " * (len(s["shots"]) + 1) + "|"]
        for name, rows in settings.items():
            lines.append(f"| {name} | " + " | ".join(_cell(rows.get(str(n)), s["per_n"][str(n)]["winner"] == name)
                                                   for n in s["shots"]) + " |")
        lines += ["", crossover_sentence(domain, s), "", "Hyper-parameters chosen on validation (validation "
                  "accuracy of the seed-0 labelled subset):", "",
                  "| setting | " + " | ".join(f"n={n}" for n in s["shots"]) + " |", "| --- " * (len(s["shots"]) + 1)
                  + "|"]
        for name, rows in settings.items():
            lines.append(f"| {name} | " + " | ".join(
                f"lr {rows[str(n)]['hp']['lr']:g}, {rows[str(n)]['hp']['steps']} steps (val "
                f"{rows[str(n)]['val_accuracy']:.1f})" if str(n) in rows else "–" for n in s["shots"]) + " |")
        lines += ["", "The setting with the best validation accuracy at each n, on test (mean over the seeds; "
                  "macro precision / recall / F1 from the shared evaluator; confusion matrices summed over the "
                  "seeds in `transfer_digits_confusion.png`):", "",
                  "| n | setting (chosen on val) | accuracy | precision | recall | F1 |", "| --- " * 6 + "|"]
        for n, p in s["per_n"].items():
            m = p["best_on_val_test"]
            lines.append(f"| {n} | {p['best_on_val']} | {m['accuracy']:.1f} ± {m['std']:.1f} | "
                         f"{100 * m['precision']:.1f} | {100 * m['recall']:.1f} | {100 * m['f1']:.1f} |")
        lines.append("")
    fits = report["fits"]
    lines += ["## Notes", "",
              f"- Cost: {fits['computed']} fits computed and {fits['read_from_cache']} read back from the cache "
              f"(`{portable(report['cache'])}`) in {report['seconds'] / 60:.1f} min: {c.get('jobs', 1)} process(es), one "
              f"target domain each, {c['threads']} torch thread(s) each. Each seed-0 test number reuses the fit "
              "chosen on validation."
              + (f" The fits themselves took {fits['fit_seconds'] / 60:.1f} min in all, summed over processes (counting "
                 "those an earlier run of the same configuration computed and cached)."
                 if fits.get("fit_seconds") is not None else ""),
              f"- Budget: to keep the whole study near half an hour on 2 CPU cores, the grid is {len(c['grid']['lr'])}"
              f" learning rates x {len(c['grid']['steps'])} step counts, chosen with one labelled subset, and a step "
              f"sees at most {c['batch_size']} images (larger support sets cost per step what {c['batch_size']} "
              f"images cost; {max(c['grid']['steps'])} steps are "
              f"{max(c['grid']['steps']) * min(c['batch_size'], 10 * max(c['shots'])) / (10 * max(c['shots'])):g} "
              f"epochs of the n={max(c['shots'])} set).",
              "- Frozen blocks are computed once per fit rather than once per step "
              "(`benchmarks/transfer_digits_learners.py`, `Transfer`); the fitted function is the same as "
              "`FineTune`'s (checked in `tests/test_digits.py`).",
              "- Curves: `transfer_digits.png` (test accuracy against n, log scale, ± std over the seeds).",
              "", "## Provenance", "", f"- command: `{prov['command']}`", f"- config: `{json.dumps(c)}`",
              f"- seeds: labelled subsets {c['seeds']}, split {c['split_seed']}", f"- commit: {prov['commit']}",
              f"- date: {prov['date']} (finished {prov['finished']})", f"- machine: {prov['machine']}",
              f"- load average at start (1 / 5 / 15 min): {prov.get('load_average', 'not recorded')}"]
    if report.get("note"):
        lines.append(f"- note: {report['note']}")
    return "\n".join(lines) + "\n"


def _save(figure, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    return Path(path)


def plot_curves(report: dict, path: Path) -> Path:
    """Test accuracy against n (log x), one line per setting (± std), one panel per domain."""
    from matplotlib.figure import Figure

    domains = report["domains"]
    figure = Figure(figsize=(6.0 * len(domains), 4.8), dpi=110, constrained_layout=True)
    axes = figure.subplots(1, len(domains), squeeze=False)[0]
    for axis, (domain, result) in zip(axes, domains.items()):
        for index, (name, rows) in enumerate(result["settings"].items()):
            shots = sorted(int(n) for n in rows)
            axis.errorbar(shots, [rows[str(n)]["mean"] for n in shots], yerr=[rows[str(n)]["std"] for n in shots],
                          label=name, marker="o", markersize=3, capsize=2, color=f"C{index % 10}",
                          linestyle="--" if name.endswith("disc.") else "-")
        shots = report["summary"][domain]["shots"]
        axis.set_xscale("log")
        axis.set_xticks(shots, [str(n) for n in shots])
        axis.set_xlabel("labelled images per class (n)")
        axis.set_ylabel("10-way test accuracy (%)")
        axis.set_title(f"Omniglot Conv-4 -> {domain}")
        axis.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="lower right")
    return _save(figure, path)


def plot_confusions(report: dict, path: Path) -> Path:
    """Confusion matrices (summed over the seeds) of the setting chosen on validation: rows domains, columns n."""
    from matplotlib.figure import Figure

    summary = report["summary"]
    n_cols = max(len(s["shots"]) for s in summary.values())
    figure = Figure(figsize=(3.2 * n_cols, 3.4 * len(summary)), dpi=100, constrained_layout=True)
    axes = figure.subplots(len(summary), n_cols, squeeze=False)
    for row, (domain, s) in enumerate(summary.items()):
        for col in range(n_cols):
            axis = axes[row, col]
            if col >= len(s["shots"]):
                axis.axis("off")
                continue
            n = str(s["shots"][col])
            p = s["per_n"][n]
            matrix = np.asarray(p["best_on_val_test"]["confusion"], dtype=float)
            axis.imshow(matrix / np.maximum(matrix.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
            for (i, j), count in np.ndenumerate(matrix):
                if count:
                    axis.text(j, i, f"{count:.0f}", ha="center", va="center", fontsize=5,
                              color="white" if count > 0.5 * matrix[i].sum() else "black")
            ticks = range(matrix.shape[0])
            axis.set_xticks(ticks), axis.set_yticks(ticks)
            axis.tick_params(labelsize=6)
            axis.set_xlabel("predicted", fontsize=7), axis.set_ylabel("true", fontsize=7)
            axis.set_title(f"{domain} n={n}: {p['best_on_val']}\nF1 {100 * p['best_on_val_test']['f1']:.1f} %",
                           fontsize=8)
    return _save(figure, path)
