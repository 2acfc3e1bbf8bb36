"""Store the test-time inner step size chosen on validation episodes in the packaged MAML-family models.

    python benchmarks/store_test_inner_lr.py    # after benchmarks/omniglot.py has evaluated the packaged models

``benchmarks/omniglot.py`` chooses a test-time inner step size per setting on validation episodes
(``inner_lr_selection.py``) and records it in ``paper_results/omniglot_maml.json``. This writes each packaged model's
choices, per shot count, into its checkpoint's ``config["learner"]["test_inner_lr_by_shot"]`` (the rest of the
checkpoint is kept as it is), so that the plain ``fewzero eval --method M --way W --shot S`` reproduces the table, and
says so in the model's ``.md``. A packaged model that is not the one the table evaluated is refused. Rerunning it
changes no file.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inner_lr_selection import VALIDATION_SEED  # noqa: E402
from omniglot_settings import model_stems  # noqa: E402
from package_checkpoint import (CONFIG_HEADING, config_block, packaged_size, step_size_section,  # noqa: E402
                                store_main, with_step_size_section)
from provenance import ROOT  # noqa: E402

from fewzero.atomic import write_text  # noqa: E402
from fewzero.errors import FewzeroError  # noqa: E402

TABLE = ROOT / "paper_results" / "omniglot_maml.json"
KEY = "test_inner_lr_by_shot"


def chosen_step_sizes(table: dict, packaged: Path) -> dict[Path, dict[int, dict]]:
    """{packaged checkpoint: {shot: what the table records for the setting that chose its step size}} for every
    packaged model of the table's methods; each record holds the setting, method, model, result and evaluation."""
    chosen: dict[Path, dict[int, dict]] = {}
    for method, entry in table.get("methods", {}).items():
        for setting, result in entry["results"].items():
            if "test_inner_lr" not in result or "validation" not in result:
                continue  # a table written before the step size was chosen on validation episodes
            path = packaged / f"{model_stems(method)[result['model']]}.pt"
            if not path.is_file():
                continue  # a model that is not packaged
            way, shot = (int(n) for n in re.fullmatch(r"(\d+)w(\d+)s", setting).groups())
            earlier = chosen.setdefault(path, {}).get(shot)
            if earlier and earlier["result"]["test_inner_lr"] != result["test_inner_lr"]:
                raise FewzeroError(f"{path.name} serves {earlier['setting']} and {setting}, whose chosen step sizes "
                                   f"differ ({earlier['result']['test_inner_lr']:g}, {result['test_inner_lr']:g}) for "
                                   f"{shot}-shot tasks: package a model per setting (package_checkpoint.py --per-shot)")
            chosen[path][shot] = {"setting": setting, "way": way, "method": method, "model": result["model"],
                                  "result": result, "evaluation": _evaluation_of(entry, setting, result),
                                  "training": entry["training"][result["model"]]}
    return chosen


def _evaluation_of(entry: dict, setting: str, result: dict) -> dict:
    """The evaluation record behind ``result``: the last evaluation of its model (each replaces the model's results)."""
    runs = [e for models, e in entry["evaluation"].items() if result["model"] in models.split(", ")]
    if not runs:
        raise FewzeroError(f"the table has no evaluation record of the {result['model']} model behind {setting}: "
                           f"re-evaluate it with benchmarks/omniglot.py --packaged")
    last = max(runs, key=lambda e: e["finished"])
    if ("--packaged" in last["command"].split()) != result["checkpoint"].startswith("fewzero/pretrained/"):
        raise FewzeroError(f"cannot tell which evaluation chose the step size of {setting} (checkpoint "
                           f"{result['checkpoint']}, last command {last['command']!r}): re-evaluate it with "
                           f"benchmarks/omniglot.py --packaged")
    return last


def _check_same_model(path: Path, payload: dict, record: dict) -> None:
    """``payload`` (the packaged checkpoint) is the training run's best checkpoint that the table evaluated."""
    training = record["training"]
    config = {**payload["config"], "learner": {k: v for k, v in payload["config"].get("learner", {}).items()
                                               if k != KEY}}
    if config != training["config"] or payload.get("metrics", {}).get("episode") != training["best_episode"]:
        raise FewzeroError(f"{path} is not the {record['method']} {record['model']} model that the table evaluated "
                           f"(its config or best episode differ from the training record): re-evaluate it with "
                           f"python benchmarks/omniglot.py --method {record['method']} --packaged")


def _notes(records: dict[int, dict]) -> dict[int, str]:
    notes = {}
    for shot, r in records.items():
        result, way = r["result"], r["way"]
        training_lr = result["training_inner_lr"]["lr"]
        scores = result["validation"]["accuracy"]
        chosen, trained = scores[f"{result['test_inner_lr']:g}"], scores[f"{training_lr:g}"]
        test = f"test accuracy in paper_results/omniglot_maml.md {result['accuracy']:.2f} ± {result['ci95']:.2f} %"
        if result["test_inner_lr"] == training_lr:
            notes[shot] = (f"the training step size: {way}-way {shot}-shot validation accuracy {chosen:.2f} %, no "
                           f"smaller step size better; {test}")
        else:
            notes[shot] = (f"{way}-way {shot}-shot validation accuracy {chosen:.2f} %, {trained:.2f} % at the training "
                           f"step size {training_lr:g}; {test}, "
                           f"{result['training_inner_lr']['accuracy']:.2f} % at {training_lr:g}")
    return notes


def _origin(records: dict[int, dict]) -> str:
    first = next(iter(records.values()))
    result, training = first["result"], first["training"]
    tried = sorted((float(lr) for lr in result["validation"]["accuracy"]), reverse=True)
    split, subset = training["config"].get("split", "vinyals"), training["config"].get("val_subset", "val")
    runs = {}
    for shot, r in sorted(records.items()):
        e = r["evaluation"]
        runs.setdefault(f"`{e['command']}` at commit {e['commit']}, {e['date']}", []).append(f"{shot}-shot")
    by = "; ".join(run if len(runs) == 1 else f"{', '.join(shots)}: {run}" for run, shots in runs.items())
    training_lr = result["training_inner_lr"]["lr"]
    halves = ", ".join(f"{lr:g}" for lr in tried if lr != training_lr)
    return (f"Each was chosen for its setting on {result['validation']['episodes']} validation episodes (the "
            f"'{subset}' characters of the {split} split, validation seed {VALIDATION_SEED}) among the training step "
            f"size {training_lr:g} and its halves {halves}, a tie keeping the larger "
            f"(benchmarks/inner_lr_selection.py), "
            f"by {by}; stored by `python benchmarks/store_test_inner_lr.py` from paper_results/omniglot_maml.json.")


def store(table: dict, packaged: Path) -> list[Path]:
    """Write the chosen step sizes into the packaged checkpoints and their notes; the files that changed."""
    from fewzero.checkpoint import load_checkpoint, save_checkpoint

    changed = []
    for path, records in sorted(chosen_step_sizes(table, packaged).items()):
        payload = load_checkpoint(path)
        _check_same_model(path, payload, next(iter(records.values())))
        by_shot = {shot: float(r["result"]["test_inner_lr"]) for shot, r in sorted(records.items())}
        learner = payload["config"].get("learner", {})
        if learner.get(KEY) != by_shot:  # torch.save is not byte-reproducible: write only what changes
            payload["config"]["learner"] = {**learner, KEY: by_shot}
            save_checkpoint(path, payload)
            changed.append(path)
        size = packaged_size(path)
        note_path = path.with_suffix(".md")
        note = note_path.read_text(encoding="utf-8")
        new = _with_config(note, payload["config"], note_path)
        new = re.sub(r"^- size: \d+ bytes$", f"- size: {size} bytes", new, count=1, flags=re.M)
        new = with_step_size_section(new, step_size_section(by_shot, origin=_origin(records), notes=_notes(records)))
        if new != note:
            write_text(note_path, new)
            changed.append(note_path)
    return changed


def _with_config(note: str, config: dict, path: Path) -> str:
    """``note`` with its config block showing ``config``."""
    pattern = re.escape(CONFIG_HEADING) + r"\n\n```yaml\n.*?\n```"
    if not re.search(pattern, note, flags=re.S):
        raise FewzeroError(f"{path} has no '{CONFIG_HEADING}' yaml block: package the model again with "
                           f"benchmarks/package_checkpoint.py")
    return re.sub(pattern, lambda _: config_block(config), note, count=1, flags=re.S)


def main(argv: list[str] | None = None) -> None:
    store_main(argv, doc=__doc__, table=TABLE, store=store, script="store_test_inner_lr.py")

if __name__ == "__main__":
    main()
