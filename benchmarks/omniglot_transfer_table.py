"""Write ``omniglot_transfer.md`` / ``.json``: the transfer learners, Matching and Relation Networks, beside the
meta-learners of ``omniglot_protonet.json`` and ``omniglot_maml.json`` (read from those files, never retyped)."""
from __future__ import annotations

import json
from pathlib import Path

from provenance import ROOT

SETTING_KEYS = ["5w1s", "5w5s", "20w1s", "20w5s"]
NAMES = {"simpleshot": "SimpleShot (nearest centroid, CL2N or L2N)", "logreg": "logistic regression (L2N)",
         "baseline": "Baseline (linear head)", "baselinepp": "Baseline++ (cosine head)",
         "finetune": "fine-tuning (frozen k, per-block lr)", "matching": "Matching Networks",
         "relation": "Relation Networks"}
TARGET_GAP = {"matching": {"5w1s": 0.5, "5w5s": 0.5, "20w1s": 0.5, "20w5s": 0.5},
              "relation": {"5w1s": 0.5, "5w5s": 0.5, "20w1s": 1.0, "20w5s": 1.0}}


def meta_learners() -> dict[str, dict[str, dict]]:
    """{method: {setting: result}} from the existing Omniglot tables."""
    found = {}
    for name in ("omniglot_protonet.json", "omniglot_maml.json"):
        path = ROOT / "paper_results" / name
        if path.is_file():
            for method, entry in json.loads(path.read_text())["methods"].items():
                found[method] = entry["results"]
    return found


def _cell(result: dict | None) -> str:
    if not result:
        return "–"
    return f"{result['accuracy']:.2f} ± {result['ci95']:.2f}" + (
        f" (N={result['episodes']})" if result.get("episodes", 1000) != 1000 else "")


def _settings(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults"


def verdicts(results: dict, meta: dict) -> list[str]:
    lines = []
    simple = [m for m in ("simpleshot", "logreg", "baseline", "baselinepp", "finetune") if m in results]
    for key in SETTING_KEYS:
        best_simple = max(simple, key=lambda m: results[m].get(key, {}).get("accuracy", -1), default=None)
        best_meta = max((m for m in meta if key in meta[m]), key=lambda m: meta[m][key]["accuracy"], default=None)
        if best_simple is None or best_meta is None or key not in results[best_simple]:
            continue
        a, b = results[best_simple][key], meta[best_meta][key]
        gap = a["accuracy"] - b["accuracy"]
        overlap = abs(gap) <= a["ci95"] + b["ci95"]
        word = "ties with" if overlap else ("beats" if gap > 0 else "trails")
        lines.append(f"- {key}: the best simple transfer baseline, {NAMES[best_simple]} ({a['accuracy']:.2f}), "
                     f"{word} the best meta-learner, {best_meta} ({b['accuracy']:.2f}); difference {gap:+.2f} "
                     f"points{' (the 95 % intervals overlap)' if overlap else ''}.")
    return lines


def targets(results: dict, published: dict) -> list[str]:
    lines = []
    for method, gaps in TARGET_GAP.items():
        for key, gap in gaps.items():
            ours = results.get(method, {}).get(key)
            if ours:
                paper = published[method]["accuracy"][key]
                met = ours["accuracy"] >= paper - gap
                lines.append(f"- {NAMES[method]} {key}: {ours['accuracy']:.2f} vs paper {paper} (target ≥ "
                             f"{paper - gap:.1f}): {'met' if met else 'missed by %.2f' % (paper - gap - ours['accuracy'])}")
    if "simpleshot" in results or "logreg" in results:
        best = max((results[m]["5w1s"]["accuracy"], m) for m in results
                   if m not in ("matching", "relation") and "5w1s" in results[m])
        lines.append(f"- best simple transfer baseline 5w1s: {best[1]} {best[0]:.2f} (target ≥ 98.63, our ProtoNet): "
                     f"{'met' if best[0] >= 98.63 else f'missed by {98.63 - best[0]:.2f}'}")
    return lines


def _earlier_runs(info: dict) -> list[str]:
    """Provenance lines of the rows that a run of some learners kept from earlier runs (none after a full run)."""
    if not info.get("earlier_runs"):
        return []
    return [f"- learners of this run: {', '.join(info['methods'])}; the other rows come from earlier runs:",
            *(f"  - {', '.join(run['methods'])}: `{run.get('command', '?')}` at commit {run.get('commit', '?')}, "
              f"{run.get('date', '?')} ({run.get('machine', '?')}, load {run.get('load_average', '?')})"
              + (f"; note: {run['note']}" if run.get("note") else "") for run in info["earlier_runs"])]


def _training(run: dict | None) -> str:
    """What a checkpoint outside the packaged models says about its training, or nothing."""
    if not run:
        return ""
    return (f" ({run['method']} trained on {run['train_way']}-way {run['train_shot']}-shot tasks; best validation "
            f"{run['val_accuracy']:.2f} at episode {run['episode']}, {run['train_seconds'] / 60:.1f} min of training)")


def model_candidates(results: dict) -> list[str]:
    """One line per cell whose validation grid chose between models: each model's validation accuracy."""
    lines = []
    for method, by_setting in results.items():
        for key in SETTING_KEYS:
            tried = [v for v in by_setting.get(key, {}).get("validation", []) if "model" in v["settings"]]
            if len(tried) > 1:
                chosen = by_setting[key]["settings"].get("model")
                lines.append(f"- {method} {key}: " + ", ".join(
                    f"the {v['settings']['model']} model {v['accuracy']:.2f}"
                    + (" (chosen)" if v["settings"]["model"] == chosen else "") for v in tried))
    return lines


def write_table(out: Path, results: dict, info: dict) -> None:
    from fewzero.atomic import write_json, write_text

    meta = meta_learners()
    published = info["published"]
    lines = ["# Omniglot: transfer baselines, Matching and Relation Networks beside the meta-learners", "",
             "5-way and 20-way, 1 and 5 shots, 15 queries per class, Vinyals split, fixed test episodes (test seed 0, "
             "the episodes of every Omniglot table); accuracy % ± 95 % confidence interval over episodes (N = "
             f"{info['episodes']['test']} unless marked).", "",
             "| learner | " + " | ".join(SETTING_KEYS) + " |", "|---|" + "---|" * len(SETTING_KEYS)]
    for method, by_setting in results.items():
        lines.append(f"| {NAMES.get(method, method)} | " + " | ".join(_cell(by_setting.get(k)) for k in SETTING_KEYS)
                     + " |")
        if method in published:
            lines.append(f"| ↳ published ({published[method]['source'].split(',')[0]}) | "
                         + " | ".join(str(published[method]["accuracy"][k]) for k in SETTING_KEYS) + " |")
    for method, by_setting in meta.items():
        lines.append(f"| {method} (from its own table) | " + " | ".join(_cell(by_setting.get(k)) for k in SETTING_KEYS)
                     + " |")
    lines += ["", "## Simple transfer vs meta-learning", "", *verdicts(results, meta), "", "## Targets", "",
              *targets(results, published), "", "## Hyper-parameters chosen on validation episodes", "",
              f"Each combination of a learner's grid was scored on {info['episodes']['val']} fixed validation episodes "
              f"of the same setting ({info['finetune_episodes']['val']} for fine-tuning, which trains the network on "
              f"every episode and is tested on {info['finetune_episodes']['test']} episodes); the best was tested "
              "once.", "", "| learner | setting | chosen | validation accuracy |", "|---|---|---|---|"]
    for method, by_setting in results.items():
        for key in SETTING_KEYS:
            if key in by_setting:
                val = by_setting[key]["val_accuracy"]
                lines.append(f"| {method} | {key} | {_settings(by_setting[key]['settings'])} | "
                             f"{'–' if val is None else f'{val:.2f}'} |")
    candidates = model_candidates(results)
    lines += ["", "Grids: " + "; ".join(f"{m}: {g}" for m, g in info["grids"].items()), "",
              *(["Models chosen on validation (a grid of one learner and setting, used when every model it names "
                 "is given):", "", *candidates, ""] if candidates else []),
              "## Models", "", *(f"- {k}: `{v}`" + _training(info.get("training_runs", {}).get(k))
                                 for k, v in info["checkpoints"].items()),
              "- sources of the published numbers: " + "; ".join(p["source"] for p in published.values()), "",
              "## Provenance", "", f"- command: `{info['command']}`", f"- commit: {info['commit']}",
              f"- date: {info['date']}", f"- machine: {info['machine']} (load {info['load_average']})",
              *([f"- note: {info['note']}"] if info.get("note") else []), *_earlier_runs(info), ""]
    if info.get("quick"):
        lines.insert(1, "\n**Quick smoke run (3 episodes per cell): not a result.**\n")
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "omniglot_transfer.md", "\n".join(lines))
    write_json(out / "omniglot_transfer.json", {"results": results, "meta_learners": meta, **info})
    print(f"wrote {out / 'omniglot_transfer.md'}")
