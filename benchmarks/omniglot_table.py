"""The Omniglot results table (``paper_results/omniglot_<table>.{json,md}``): the training records it keeps, merging
one run's results into it per setting, the lock runs that share it hold, and its markdown."""
from __future__ import annotations

import fcntl
import json
import sys
from contextlib import contextmanager
from pathlib import Path

from omniglot_settings import PUBLISHED, SETTINGS, TARGET
from provenance import provenance, relative


def recorded_training(table_path: Path, method: str, models: dict[str, str]) -> dict[str, dict]:
    """The training records the table keeps for ``models`` of ``method`` (for re-evaluating packaged models)."""
    table = json.loads(table_path.read_text()) if table_path.is_file() else {}
    recorded = table.get("methods", {}).get(method, {}).get("training", {})
    missing = [model for model in models if model not in recorded]
    if missing:
        sys.exit(f"{relative(table_path)} has no training record of {method} {', '.join(missing)}: "
                 f"train it without --packaged")
    return {model: recorded[model] for model in models}


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
    "training step size can overshoot. The plain `fewzero eval --method M --way W --shot S` reproduces \"ours\": "
    "the packaged models carry the step size chosen per number of shots (`learner.test_inner_lr_by_shot`, stored by "
    "benchmarks/store_test_inner_lr.py); add `--set learner.test_inner_lr=LR` to adapt with another one (the "
    "training step size gives \"ours at the training inner lr\").")


MAMLPP_SWITCHES = ("multi_step_loss", "per_step_bn_weights", "per_step_bn_statistics", "learned_inner_lr",
                   "derivative_order_annealing")


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
                learned = train["config"].get("learner", {}).get("learned_inner_lr")  # MAML++'s LSLR
                lr_cells = (f"{base['accuracy']:.2f} ± {base['ci95']:.2f} (lr {base['lr']:g}) | {r['test_inner_lr']:g} | "
                            if base else "— | learned per step | " if learned else "not measured | | ")
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
                     f"{learner['test_inner_steps']} at test time, batch norm "
                     f"{learner.get('batch_norm', 'transductive')}" if "inner_lr" in learner else "")
            switches = [k for k in MAMLPP_SWITCHES if learner.get(k)]
            if method == "mamlpp":
                inner += f"; MAML++ components on: {', '.join(switches) or 'none'}"
            schedule = (f"cosine to {c.get('lr_min', 0.0)}" if c.get("lr_schedule") == "cosine"
                        else f"x{c['lr_gamma']} every {c['lr_step']} tasks")
            batch = f", {c['meta_batch']} per meta-batch" if c.get("meta_batch", 1) > 1 else ""
            processes = t.get("processes") or c.get("workers", 1)  # older runs kept it in the config as workers
            if processes > 1:
                batch += f" shared by {processes} processes"
            lines.append(
                f"- {method} {name} model: `{t['command']}`; {c['backbone']}, {c['train_way']}-way "
                f"{c['train_shot']}-shot {c['train_query']}-query tasks{batch}, Adam lr {c['lr']} {schedule}"
                f"{inner}; {t['episodes_done']} tasks in {t['train_seconds'] / 60:.1f} min "
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
