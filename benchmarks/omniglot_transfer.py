"""Transfer learners, Matching and Relation Networks on Omniglot (Vinyals split): the table
``paper_results/omniglot_transfer.md``, beside ProtoNet and the MAML family from their own tables.

    python benchmarks/omniglot_transfer.py                 # the table (resumable: finished cells are cached)
    python benchmarks/omniglot_transfer.py --quick --out /tmp/t   # a smoke run with few episodes
    python benchmarks/omniglot_transfer.py --render-only   # the table again, the meta-learners' rows read afresh

The transfer learners start from the shipped pretrained Conv-4 (``fewzero/pretrained/pretrain_conv4_omniglot.pt``,
made by ``fewzero pretrain``); Matching and Relation from their ``fewzero train`` runs (``--matching``,
``--relation``, default: the shipped checkpoints). For each learner and setting the hyper-parameters of its grid are
chosen on fixed *validation* episodes; the chosen ones are then scored once on the fixed test episodes (test seed
0, the same episodes as every other Omniglot table). At 20-way 1-shot, Relation's candidates are two models: the
5-way one and one trained on 20-way 1-shot tasks (``--relation-20way``, as Sung et al. train one model per
setting), when that checkpoint exists.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from provenance import ROOT, provenance, relative, standing_runs
from result_cache import Cache, weights_digest

sys.path.insert(0, str(ROOT))
from fewzero.errors import FewzeroError  # noqa: E402

SETTINGS = [(5, 1), (5, 5), (20, 1), (20, 5)]
TRANSFER = ("simpleshot", "logreg", "baseline", "baselinepp", "finetune")
EPISODIC = ("matching", "relation")
# validation grids (every combination is scored on the validation episodes of each setting)
GRIDS = {
    "simpleshot": {"normalisation": ["cl2n", "l2n", "un"]},
    "logreg": {"C": [0.1, 1.0, 10.0, 100.0]},  # 100 added: 10 was the grid's edge in every setting
    "baseline": {"lr": [0.1, 1.0], "steps": [100]},
    "baselinepp": {"lr": [0.1, 1.0], "steps": [100], "scale": [10.0]},
    "finetune": {"freeze": [2, 3], "lr": [0.01, 0.1], "steps": [30]},
}
# a learner's models, by the task shape each was trained on: the "model" of a grid point picks its checkpoint
MODELS = {"relation": {"5-way 1-shot": "relation", "20-way 1-shot": "relation_20way_1shot"}}
# grids of one (learner, way, shot) only, used when every checkpoint they name is given
SETTING_GRIDS = {("relation", 20, 1): {"model": list(MODELS["relation"])}}
# fine-tuning trains the network on every episode: fewer episodes (the table says how many)
EPISODES = {"val": 100, "test": 1000}
FINETUNE_EPISODES = {"val": 20, "test": 100}
PUBLISHED = {
    "matching": {"source": "Vinyals et al., Matching Networks for One Shot Learning, NeurIPS 2016, Table 1",
                 "accuracy": {"5w1s": 98.1, "5w5s": 98.9, "20w1s": 93.8, "20w5s": 98.5}},
    "relation": {"source": "Sung et al., Learning to Compare: Relation Network for Few-Shot Learning, CVPR 2018, "
                           "Table 1", "accuracy": {"5w1s": 99.6, "5w5s": 99.8, "20w1s": 97.6, "20w5s": 99.1}},
}


def checkpoint_key(method: str, settings: dict) -> str:
    """Which of the run's checkpoints a grid point of ``method`` scores: the pretrained backbone, the learner's
    model, or the one its ``model`` setting names."""
    if method in TRANSFER:
        return "pretrained"
    return MODELS.get(method, {}).get(settings.get("model"), method)


def setting_grid(method: str, way: int, shot: int, checkpoints: dict[str, Path]) -> dict[str, list]:
    """The validation grid of ``method`` at ``way``-way ``shot``-shot: its own grid for this task shape when
    every checkpoint that grid names was given, else the learner's grid."""
    grid = SETTING_GRIDS.get((method, way, shot))
    if grid and all(checkpoint_key(method, {"model": m}) in checkpoints for m in grid.get("model", [])):
        return grid
    return GRIDS.get(method, {})


def training_runs(checkpoints: dict[str, Path]) -> dict[str, dict]:
    """What the checkpoints outside the packaged models hold about their training (task shape, episodes, minutes,
    best validation accuracy), read from each checkpoint for the table."""
    from fewzero.checkpoint import load_checkpoint

    runs = {}
    for key, path in checkpoints.items():
        if not Path(path).resolve().is_relative_to(ROOT / "fewzero" / "pretrained"):
            saved = load_checkpoint(path)
            config, metrics = saved.get("config", {}), saved.get("metrics", {})
            runs[key] = {"method": config.get("method"), "train_way": config.get("train_way"),
                         "train_shot": config.get("train_shot"), "episode": metrics.get("episode"),
                         "train_seconds": metrics.get("train_seconds"), "val_accuracy": metrics.get("val_accuracy")}
    return runs


def build(method: str, settings: dict, checkpoints: dict[str, Path]):
    from fewzero.checkpoint import learner_from_checkpoint

    if method in TRANSFER:
        return learner_from_checkpoint(checkpoints["pretrained"], method=method, learner_settings=settings)[0]
    return learner_from_checkpoint(checkpoints[checkpoint_key(method, settings)], method=method)[0]


def cell_key(method: str, checkpoint: Path, settings: dict, subset: str, way: int, shot: int, episodes: int) -> str:
    """The cache key of one cell: the checkpoint by its weights (not its path), so that a replaced model is
    scored afresh and a copy of a scored one (e.g. once shipped) is not; a ``model`` setting is named by those
    weights already."""
    settings = {k: v for k, v in settings.items() if k != "model"}
    return json.dumps([method, weights_digest(checkpoint), settings, subset, way, shot, episodes])


def score(method, settings, checkpoints, datasets, subset, way, shot, episodes, cache: Cache) -> dict:
    from fewzero.evaluate import evaluate
    from fewzero.sampling import EpisodeSampler

    key = cell_key(method, checkpoints[checkpoint_key(method, settings)], settings, subset, way, shot, episodes)

    def run():
        dataset = datasets[subset]
        sampler = EpisodeSampler(dataset.labels, way, shot, 15, episodes, seed=0, class_names=dataset.class_names)
        report = evaluate(build(method, settings, checkpoints), dataset, sampler, progress=False)
        return {"accuracy": report.accuracy, "ci95": report.ci95, "f1": 100 * report.f1, "episodes": episodes,
                "seconds": round(report.seconds, 1)}
    return cache.get_or_run(key, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "paper_results")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "omniglot_transfer" / "cells.json")
    parser.add_argument("--pretrained", type=Path, default=ROOT / "fewzero/pretrained/pretrain_conv4_omniglot.pt")
    parser.add_argument("--matching", type=Path, default=ROOT / "fewzero/pretrained/matching_omniglot.pt")
    parser.add_argument("--relation", type=Path, default=ROOT / "fewzero/pretrained/relation_omniglot.pt")
    parser.add_argument("--relation-20way", type=Path, default=None,
                        help="Relation model trained on 20-way 1-shot tasks, a candidate at 20w1s (default: the "
                             "shipped relation_omniglot_20way_1shot.pt if there is one, else no such candidate)")
    parser.add_argument("--methods", nargs="+", default=[*TRANSFER, *EPISODIC])
    parser.add_argument("--quick", action="store_true", help="3 episodes per cell, the first grid point only")
    parser.add_argument("--note", default=None, help="a remark recorded with the run (e.g. how a candidate was made)")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the table from its json, with the meta-learners' rows read afresh from their "
                             "own tables (e.g. after a meta-learner was retrained); no cell is scored")
    args = parser.parse_args()
    shipped_20way = ROOT / "fewzero/pretrained/relation_omniglot_20way_1shot.pt"
    if args.relation_20way is not None and not args.relation_20way.is_file():
        sys.exit(f"omniglot_transfer.py: --relation-20way {args.relation_20way} does not exist: pass the best.pt of a "
                 f"fewzero train run of configs/relation_omniglot_20way.yaml, or leave the flag out")
    relation_20way = args.relation_20way or (shipped_20way if shipped_20way.is_file() else None)
    if args.render_only:
        from omniglot_transfer_table import write_table

        table = json.loads((args.out / "omniglot_transfer.json").read_text())
        results = table.pop("results")
        table.pop("meta_learners", None)
        return write_table(args.out, results, table)

    from fewzero.config import load_config
    from fewzero.train import load_split
    from fewzero.tune.search import best_of, search, space_from_grid
    from omniglot_transfer_table import write_table
    from tqdm import tqdm

    config = load_config(None, "omniglot", overrides={"method": "simpleshot"})
    datasets = {subset: load_split(config, subset) for subset in ("val", "test")}
    checkpoints = {"pretrained": args.pretrained, "matching": args.matching, "relation": args.relation,
                   **({"relation_20way_1shot": relation_20way} if relation_20way else {})}
    cache = Cache(args.cache)
    previous_path = args.out / "omniglot_transfer.json"
    previous = json.loads(previous_path.read_text()) if previous_path.is_file() and not args.quick else {}
    digests = {k: weights_digest(v) for k, v in checkpoints.items()}
    try:  # the rows this run keeps must still match the checkpoints: checked before any cell is scored
        merged(previous, {method: {} for method in args.methods}, digests)
    except FewzeroError as exc:
        sys.exit(f"omniglot_transfer.py: {exc}")
    results = {}
    cells = [(method, way, shot) for method in args.methods for way, shot in SETTINGS]
    for method, way, shot in tqdm(cells, desc="omniglot transfer", dynamic_ncols=True):
        budget = FINETUNE_EPISODES if method == "finetune" else EPISODES
        if args.quick:
            budget = {"val": 3, "test": 3}
        grid = {key: values[:1] if args.quick else values
                for key, values in setting_grid(method, way, shot, checkpoints).items()}
        val = []  # (settings, validation result) of each grid point, chosen by fewzero.tune's grid search

        def objective(settings: dict) -> float:
            val.append((settings, score(method, settings, checkpoints, datasets, "val", way, shot, budget["val"],
                                        cache)))
            return val[-1][1]["accuracy"]

        if grid and len(space_from_grid(grid).grid_points()) > 1:
            chosen, chosen_val = val[best_of(search(space_from_grid(grid), objective))["grid_index"]]
        else:  # one candidate: nothing to choose on validation
            chosen, chosen_val = dict((k, v[0]) for k, v in grid.items()), None
        test = score(method, chosen, checkpoints, datasets, "test", way, shot, budget["test"], cache)
        results.setdefault(method, {})[f"{way}w{shot}s"] = {
            **test, "settings": chosen, "val_accuracy": chosen_val["accuracy"] if chosen_val else None,
            "validation": [{"settings": s, "accuracy": v["accuracy"]} for s, v in val]}
    results, earlier = merged(previous, results, digests)
    write_table(args.out, results, {"grids": GRIDS, "episodes": EPISODES, "finetune_episodes": FINETUNE_EPISODES,
                                    "checkpoints": {k: relative(v) for k, v in checkpoints.items()},
                                    "weights_digests": digests, "training_runs": training_runs(checkpoints),
                                    "published": PUBLISHED, "quick": args.quick, "note": args.note, **provenance(),
                                    "methods": list(args.methods), "earlier_runs": earlier})


RUN_KEYS = ("command", "commit", "date", "machine", "load_average", "weights_digests", "note")


def checkpoints_of(method: str) -> tuple[str, ...]:
    """Which checkpoints a learner's rows may depend on: the pretrained backbone, or the learner's own models."""
    return ("pretrained",) if method in TRANSFER else tuple(MODELS.get(method, {method: method}).values())


def dependencies(method: str, row: dict, given: set[str]) -> set[str]:
    """The checkpoints ``method``'s ``row`` ({setting: cell}) depends on: those its cells chose, and the rivals
    that validation compared them with where this run was ``given`` them too (a rival left out of a later run does
    not unsettle the choice it lost)."""
    chosen = {checkpoint_key(method, cell.get("settings", {})) for cell in row.values()}
    return (chosen or set(checkpoints_of(method))) | (set(checkpoints_of(method)) & given)


def merged(previous: dict, results: dict, digests: dict[str, str] | None = None) -> tuple[dict, list[dict]]:
    """(the table's rows, the earlier runs behind the rows this run did not redo): a run of some ``--methods`` keeps
    the ``previous`` table's other learners, each with the run that scored it (command, commit, date, machine, the
    weights digests of its checkpoints). A kept row whose checkpoint now holds other weights (``digests``: this run's)
    is an error: its learner must be scored again. Runs that recorded no digests are kept as they are."""
    rows = {**previous.get("results", {}), **results}
    order = [*TRANSFER, *EPISODIC]
    rows = {m: rows[m] for m in sorted(rows, key=lambda m: order.index(m) if m in order else len(order))}
    runs = previous.get("earlier_runs", []) + ([{**{k: previous[k] for k in RUN_KEYS if k in previous},
                                                  "methods": previous.get("methods", list(previous["results"]))}]
                                                if previous.get("results") else [])
    earlier = []
    for run, kept in standing_runs(runs, results, lambda run: run["methods"]):
        recorded = run.get("weights_digests") or {}
        stale = [m for m in kept if digests and any(recorded.get(k, digests.get(k)) != digests.get(k)
                                                    for k in dependencies(m, rows.get(m, {}), set(digests)))]
        if stale:
            raise FewzeroError(f"the rows of {', '.join(stale)} were scored with other weights than the checkpoints "
                               f"now hold: add them to --methods")
        earlier.append({**run, "methods": kept})
    return rows, earlier


def run_of(table: dict, method: str) -> dict:
    """The run that scored ``method``'s rows in ``table``: this table's own run or one of its earlier runs."""
    if method in table.get("methods", table.get("results", {})):
        return {k: table[k] for k in RUN_KEYS if k in table}
    found = [run for run in table.get("earlier_runs", []) if method in run["methods"]]
    if not found:
        raise FewzeroError(f"the table names no run that scored {method}: rerun benchmarks/omniglot_transfer.py")
    return found[0]

if __name__ == "__main__":
    main()
