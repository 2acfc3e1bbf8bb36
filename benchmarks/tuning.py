"""Grid vs TPE vs random search with ``fewzero tune``, and pruning on vs off: ``paper_results/tuning.{md,json,png}``.

    python benchmarks/tuning.py                  # resumable: every study keeps its trials in runs/tuning/
    python benchmarks/tuning.py --quick --out /tmp/t --runs /tmp/t/runs   # a smoke run (tiny budgets)

Search: for each learner the study searches the space it ships (``configs/spaces/<name>.yaml``): once over its
whole grid, and with TPE and random search given as many trials as the grid has points (3 seeds each). Reported:
the best validation score each reaches, the trials TPE and random need to reach the grid's best validation score,
and the test score of each study's best configuration (scored once, after the studies; nothing is chosen on it).
Zero-shot learners are scored on CUB-50's validation classes (T1), logistic regression on Omniglot validation
episodes (5-way 1-shot).

Pruning: ProtoNet training trials on Omniglot (the space's short budget, validation every 50 episodes), the same
TPE seed with the median pruner, with Hyperband, and with no pruner: wall time and best validation accuracy.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from provenance import ROOT, provenance, relative
from result_cache import weights_digest

sys.path.insert(0, str(ROOT))

# dap is left out: one fit of its 312 attribute classifiers takes 70-140 s here (84 trials would take hours)
ZERO_SHOT = ("eszsl", "sae", "ale", "devise", "sje")
FEW_SHOT = ("logreg",)
SEEDS = (0, 1, 2)
# 24 trials: the median pruner never stops its first 3 (n_startup_trials) and compares the others with few
# finished ones, so a short study understates what pruning saves; the first run had 12 trials, and the report
# keeps the speed-up over the first 12 beside the one over all 24
PRUNING_TRIALS = 24
PRUNING_EARLIER_TRIALS = 12
PRUNING_BUDGET = {"episodes": 100, "val_every": 20, "val_episodes": 30}
PRUNERS = ("none", "median", "hyperband")
TEST_EPISODES = 1000
SPANS: list[tuple[str, str]] = []  # (start, end) of every trial read, for the report's provenance


def run_study(name: str, kind: str, sampler: str, seed: int, trials: int, out: Path, objective, pruner="none",
              space=None, plots: bool = True) -> dict:
    """Run (or resume) one study to ``trials`` trials; its trials in order of number: ``[{"number", "state",
    "value", "params", "seconds"}]`` and the wall time of the invocation that finished it."""
    from fewzero.cli.tuning import default_space
    from fewzero.tune import StudySettings, load_space, tune
    from fewzero.tune.study import load_study, trial_target

    space = space or load_space(default_space(name))
    settings = StudySettings(name=name, out=out, trials=trials, sampler=sampler, pruner=pruner, seed=seed)
    done = out / "summary.json"
    summary = json.loads(done.read_text()) if done.is_file() else None
    if summary is None or summary["trials_counted"] < trial_target(settings, space):
        summary = tune(None, space, settings, objective=objective, progress=False, plots=plots)
    study = load_study(settings, space)
    rows = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             "seconds": (t.datetime_complete - t.datetime_start).total_seconds(), "reports": len(t.intermediate_values),
             "started": t.datetime_start.isoformat(timespec="minutes"),
             "completed": t.datetime_complete.isoformat(timespec="minutes")}
            for t in study.get_trials(deepcopy=False) if t.datetime_complete and not t.user_attrs.get("interrupted")]
    SPANS.extend((row["started"], row["completed"]) for row in rows)
    return {"trials": rows, "wall_seconds": summary["wall_seconds"], "best": summary["best"]}


def best_so_far(values: list[float | None]) -> list[float]:
    out, best = [], float("-inf")
    for value in values:
        best = max(best, value if value is not None else float("-inf"))
        out.append(best)
    return out


def trials_to_reach(values: list[float | None], target: float) -> int | None:
    """1-based trial count at which the best-so-far first reaches ``target`` (None: never)."""
    for index, best in enumerate(best_so_far(values)):
        if best >= target - 1e-9:
            return index + 1
    return None


def edges(space, trials: list[dict], best: dict) -> list[str]:
    """The keys whose grid best sits at an end of their range, as ``"name (end)"``; ``"name (end, plateau)"`` where
    another grid point that differs in that key only scores the same (``fewzero.tune.space.level_along``): the score
    is level there, and a wider range is unlikely to find more."""
    from fewzero.tune.space import level_along

    scored = [(t["params"], t["value"]) for t in trials]
    best_value = max(t["value"] for t in trials if t["params"] == best)
    return [f"{e['name']} ({e['end']}{', plateau' if level_along(e['name'], best, best_value, scored) else ''})"
            for e in space.at_edge(best)]


def test_score(kind: str, name: str, params: dict, data, cache: dict, quick: bool) -> float:
    """The test score of a configuration: zero-shot T1 on the unseen test classes, or few-shot test accuracy."""
    key = json.dumps([name, params], sort_keys=True)
    if key not in cache:
        if kind == "zero-shot":
            from fewzero.evaluate_zsl import evaluate_zero_shot
            from fewzero.registry import ZERO_SHOT as REGISTRY

            args = {"seed": 0} if "seed" in REGISTRY.parameters(name) else {}
            report = evaluate_zero_shot(REGISTRY.create(name, **args, **params), data, seed=0, calibrate=False)
            cache[key] = report.t1
        else:
            from fewzero.checkpoint import learner_from_checkpoint
            from fewzero.config import load_config
            from fewzero.evaluate import evaluate
            from fewzero.pretrained import default_checkpoint
            from fewzero.train import episode_sampler, load_split

            config = load_config(name, "omniglot", overrides=params)
            learner = learner_from_checkpoint(default_checkpoint(config), method=name,
                                              learner_settings=config.learner)[0]
            test = load_split(config, config.test_subset, progress=False)
            sampler = episode_sampler(test, config, 20 if quick else TEST_EPISODES, config.test_seed)
            cache[key] = evaluate(learner, test, sampler, progress=False).accuracy
    return cache[key]


def few_shot_backbones(names) -> dict[str, dict]:
    """The checkpoint each few-shot learner of ``names`` was tuned on (a transfer learner: the shipped pretrained
    backbone), with its weights digest: a table scored on a backbone since replaced says so."""
    from fewzero.config import load_config
    from fewzero.pretrained import default_checkpoint

    found = {}
    for name in names:
        path = default_checkpoint(load_config(name, "omniglot"))
        found[name] = {"checkpoint": relative(path), "weights_digest": weights_digest(path)}
    return found


def search_comparison(kind: str, name: str, objective, data, runs: Path, seeds, cache: dict, quick: bool) -> dict:
    from fewzero.cli.tuning import default_space
    from fewzero.tune import load_space

    space = load_space(default_space(name))
    if quick:
        space = type(space)(space.params[:1], space.budget, space.fixed, space.method, space.source)
    size = len(space.grid_points())
    grid = run_study(name, kind, "grid", 0, size, runs / name / "grid", objective, space=space)
    grid_values = [t["value"] for t in grid["trials"]]
    grid_best = max(v for v in grid_values if v is not None)
    result = {"grid_points": size, "space": str(Path(space.source).relative_to(ROOT)) if Path(space.source).is_absolute()
              else space.source, "grid": {"best_val": grid_best, "curve": best_so_far(grid_values),
                                         "best_params": grid["best"]["params"], "seconds": grid["wall_seconds"],
                                         # a best at an end of a range says the space should be wider
                                         "at_edge": edges(space, grid["trials"], grid["best"]["params"])}}
    for sampler in ("tpe", "random"):
        per_seed = []
        for seed in seeds:
            study = run_study(name, kind, sampler, seed, size, runs / name / f"{sampler}_{seed}", objective,
                              space=space)
            values = [t["value"] for t in study["trials"]]
            per_seed.append({"seed": seed, "best_val": max(v for v in values if v is not None),
                             "reached_grid_best_at": trials_to_reach(values, grid_best), "curve": best_so_far(values),
                             "best_params": study["best"]["params"], "seconds": study["wall_seconds"]})
        reached = [s["reached_grid_best_at"] for s in per_seed]
        result[sampler] = {
            "seeds": per_seed, "median_best_val": statistics.median(s["best_val"] for s in per_seed),
            # a seed that never reaches the grid's best counts as needing more than the budget
            "median_trials_to_grid_best": statistics.median(r if r is not None else size + 1 for r in reached),
            "reached_in_half": sum(1 for r in reached if r is not None and r <= size / 2)}
    for sampler in ("grid", "tpe", "random"):
        entries = [result["grid"]] if sampler == "grid" else result[sampler]["seeds"]
        for entry in entries:
            entry["test"] = test_score(kind, name, entry["best_params"], data, cache, quick)
    result["tpe_half_budget"] = result["tpe"]["median_trials_to_grid_best"] <= size / 2
    return result


def pruning_comparison(runs: Path, quick: bool) -> dict:
    from fewzero.tune import ObjectiveSpec, load_space

    shipped = load_space(ROOT / "configs" / "spaces" / "protonet.yaml")
    # ProtoNet trains at 1-3 s per 60-way episode on this 2-core machine: the study fixes 20-way training episodes
    # and a shorter budget than the shipped space, so that 3 x 12 trials fit in about half an hour
    budget = {**shipped.budget, **PRUNING_BUDGET, **({"episodes": 20, "val_every": 10, "val_episodes": 5}
                                                     if quick else {})}
    space = type(shipped)(tuple(p for p in shipped.params if p.name != "train_way"), budget,
                          {**shipped.fixed, "train_way": 20}, shipped.method, shipped.source)
    trials = 4 if quick else PRUNING_TRIALS
    objectives = {pruner: ObjectiveSpec("protonet", "few-shot", dataset="omniglot",
                                        out=str(runs / "protonet_pruning" / pruner)).build() for pruner in PRUNERS}
    # the three studies advance in lockstep, one trial each in turn, so that a change in the machine's load
    # falls on all three alike
    studies = {}
    for count in range(1, trials + 1):
        for pruner in PRUNERS:
            studies[pruner] = run_study("protonet", "few-shot", "tpe", 0, count, runs / "protonet_pruning" / pruner,
                                        objectives[pruner], pruner=pruner, space=space, plots=count == trials)
    result = {}
    for pruner, study in studies.items():
        complete = [t for t in study["trials"] if t["state"] == "COMPLETE"]
        best = max(complete, key=lambda t: t["value"])
        metrics = runs / "protonet_pruning" / pruner / "trials" / f"{best['number']:04d}" / "metrics.json"
        result[pruner] = {"trial_seconds": round(sum(t["seconds"] for t in study["trials"]), 1),
                          "best_val": best["value"], "best_ci95": json.loads(metrics.read_text())["best_val_ci95"], "best_params": best["params"], "best_number": best["number"],
                          "reports": [t["reports"] for t in study["trials"]],
                          "states": {s: sum(1 for t in study["trials"] if t["state"] == s)
                                     for s in ("COMPLETE", "PRUNED", "FAIL")}}
    val_episodes = space.budget.get("val_episodes")
    first = min(trials, PRUNING_EARLIER_TRIALS)
    for pruner, study in studies.items():  # the same studies cut at the earlier run's trial count
        head = [t for t in study["trials"] if t["number"] < first]
        result[pruner]["first"] = {"trials": first, "trial_seconds": round(sum(t["seconds"] for t in head), 1),
                                   "best_val": max(t["value"] for t in head if t["state"] == "COMPLETE")}
    for pruner in PRUNERS[1:]:
        entry = result[pruner]
        entry["speedup"] = result["none"]["trial_seconds"] / max(entry["trial_seconds"], 1e-9)
        entry["first"]["speedup"] = result["none"]["first"]["trial_seconds"] / max(entry["first"]["trial_seconds"],
                                                                                   1e-9)
    result["val_episodes"] = val_episodes
    result["budget"] = space.budget
    result["fixed"] = space.fixed
    result["params"] = [p.name for p in space.params]
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budgets, one seed, nothing comparable")
    parser.add_argument("--out", default=str(ROOT / "paper_results"))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "tuning"), help="study folders (resumable)")
    parser.add_argument("--learners", nargs="+", default=None, help="subset of the learners")
    parser.add_argument("--parts", nargs="+", default=["search", "pruning"], choices=("search", "pruning"),
                        help="which comparisons to run (finished studies are read back, not rerun)")
    parser.add_argument("--note", default="", help="conditions worth recording (e.g. other jobs on the machine)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the md and png from --out's tuning.json")
    args = parser.parse_args(argv)
    if args.render_only:
        from tuning_report import write_report

        report = json.loads((Path(args.out) / "tuning.json").read_text())
        write_report(report, Path(args.out))
        return report
    import torch

    from fewzero.tune import ObjectiveSpec
    from fewzero.zsl.loaders import load_zero_shot

    torch.manual_seed(0)
    out, runs = Path(args.out), Path(args.runs)
    prov = provenance()
    seeds = SEEDS[:1] if args.quick else SEEDS
    cache_path = runs / "test_scores.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    results, started = {}, time.perf_counter()
    zsl_data = zsl_val_data = None
    for name in (args.learners or (*ZERO_SHOT, *FEW_SHOT)) if "search" in args.parts else ():
        kind = "zero-shot" if name in ZERO_SHOT else "few-shot"
        if kind == "zero-shot":
            from fewzero.tune.objectives import ZeroShotObjective
            from fewzero.zsl.loaders import tuning_options

            options = {"epochs": 1, "image_size": 32} if args.quick else {}
            # studies: a backbone that never saw the validation classes (as fewzero tune); test: all seen classes
            zsl_data = zsl_data or load_zero_shot("cub50", semantics="attributes", progress=not args.quick,
                                                  **options)
            zsl_val_data = zsl_val_data or load_zero_shot("cub50", semantics="attributes", progress=not args.quick,
                                                          **tuning_options("cub50", options))
            objective = ZeroShotObjective(name, zsl_val_data, dataset="cub50", semantics="attributes")
            data = zsl_data
        else:
            overrides = {"val_episodes": 20 if args.quick else 100}
            objective = ObjectiveSpec(name, kind, dataset="omniglot", overrides=overrides).build()
            data = None
        results[name] = {"kind": kind, **search_comparison(kind, name, objective, data, runs, seeds, cache,
                                                           args.quick)}
        from fewzero.atomic import write_json

        write_json(cache_path, cache)
        r = results[name]
        print(f"{name}: grid best {r['grid']['best_val']:.2f} ({r['grid_points']} points); TPE median best "
              f"{r['tpe']['median_best_val']:.2f}, median trials to the grid's best "
              f"{r['tpe']['median_trials_to_grid_best']}; random {r['random']['median_trials_to_grid_best']}",
              flush=True)
    pruning = pruning_comparison(runs, args.quick) if "pruning" in args.parts else None
    features = (zsl_data.info.get("features") or {}) if zsl_data is not None else {}
    report = {"provenance": prov, "note": args.note, "seeds": list(seeds), "learners": results, "pruning": pruning,
              "seconds": round(time.perf_counter() - started, 1),
              "trials_ran": [min(s for s, _ in SPANS), max(e for _, e in SPANS)] if SPANS else None,
              "few_shot_backbones": few_shot_backbones([n for n, r in results.items() if r["kind"] == "few-shot"]),
              "zero_shot_data": {k: features.get(k) for k in ("backbone", "input_size", "epochs", "feature_dim",
                                                                "train_seconds")} if features else None}
    from tuning_report import write_report

    if set(args.parts) == {"search", "pruning"}:
        write_report(report, out, quick=args.quick)
    else:
        print("one part only: the table is written when both parts run (finished studies are read back)")
    return report


if __name__ == "__main__":
    main()
