"""Ensembles of trained learners vs their best member: ``paper_results/ensembles.{md,json}``.

    python benchmarks/ensembles.py                        # both parts (resumable: finished parts are cached)
    python benchmarks/ensembles.py --part omniglot        # or cub50
    python benchmarks/ensembles.py --quick --out /tmp/e   # a smoke run with few episodes

Omniglot 20-way 1-shot (Vinyals split): the packaged learners (fewzero/pretrained) are the members. Everything an
ensemble chooses -- member temperatures, ``mean_prob`` weights (and so which members it keeps: a weight of 0 drops
one), the stacker -- is fitted on validation episodes of the validation characters (seed 1); the ensembles are then
scored once on the 1000 fixed test episodes of every other Omniglot table (test seed 0, 15 queries per class).

CUB-50 zero-shot (attributes): every zero-shot learner of ``paper_results/zsl_cub50.json``, on the features that
table chose on validation classes (its ``chosen_features``) with the hyper-parameters it chose on them; the ensemble
fits its combiner on seen classes held out as pseudo-unseen (``fewzero.ensemble.ZeroShotEnsemble``), never on test
items or unseen classes. ``--part cub50_both``: every learner twice, on attributes and on text (``<learner>@text``),
each reading its block of ``attributes+text`` (``fewzero.zsl.semantic_block.SemanticBlock``). Every reported number
comes from the shared evaluators (``fewzero.evaluate.evaluate``, ``fewzero.evaluate_zsl.evaluate_zero_shot``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import ROOT, provenance, relative  # noqa: E402
from result_cache import Cache, members_digest, weights_digest  # noqa: E402

sys.path.insert(0, str(ROOT))

# members and their test-time settings, each chosen on validation where it has any (see the sources)
OMNIGLOT_MEMBERS = ("protonet", "matching", "relation", "simpleshot", "logreg", "maml", "fomaml", "anil")
TRANSFER_SOURCE = "paper_results/omniglot_transfer.json"  # simpleshot / logreg settings chosen on validation
ANIL_TEST_INNER_LR = 0.05  # paper_results/omniglot_maml.md: chosen on 200 validation episodes
MAX_SECONDS_PER_EPISODE = 1.0  # a member slower than this (measured on validation episodes) is left out
ZSL_MEMBERS = ("dap", "eszsl", "ale", "devise", "sje", "sae", "cvae", "fclswgan", "tfvaegan", "gcnzsl")
TARGETS = {"omniglot": 0.5, "cub50": 2.0}


def few_shot_summary(report) -> dict:
    return {"accuracy": report.accuracy, "ci95": report.ci95, "episodes": report.n_episodes,
            "seconds": round(report.seconds, 1), "members": report.members, "disagreement": report.disagreement}


def omniglot_settings() -> dict[str, dict]:
    chosen = json.loads((ROOT / TRANSFER_SOURCE).read_text())["results"]
    return {"simpleshot": chosen["simpleshot"]["20w1s"]["settings"], "logreg": chosen["logreg"]["20w1s"]["settings"],
            "anil": {"test_inner_lr": ANIL_TEST_INNER_LR}}


def run_omniglot(args, cache: Cache) -> dict:
    import torch

    from fewzero.config import load_config
    from fewzero.ensemble import Ensemble
    from fewzero.ensemble_setup import load_member, validation_seed
    from fewzero.evaluate import evaluate, member_logits_on_episodes
    from fewzero.train import episode_sampler, load_split

    val_episodes, test_episodes = (4, 4) if args.quick else (args.val_episodes, 1000)
    settings = omniglot_settings()
    specs = [{"method": m, **({"settings": settings[m]} if m in settings else {})} for m in OMNIGLOT_MEMBERS]
    config = load_config("ensemble", "omniglot", overrides={
        "test_way": 20, "test_shot": 1, "test_query": 15, "test_episodes": test_episodes, "test_seed": 0,
        "val_episodes": val_episodes, "learner.members": specs})
    members = {spec["method"]: load_member(spec, i, config) for i, spec in enumerate(specs, 1)}
    # every cached part names the members' weights and settings: a replaced packaged model is scored afresh
    digest = members_digest({n: (weights_digest(Path(members[n][2])), settings.get(n, {})) for n in members})
    val_set = load_split(config, config.val_subset, progress=False)
    test_set = load_split(config, config.test_subset, progress=False)

    # 1. speed on 3 validation episodes decides which members the 2-core budget allows
    def timing(name):
        learner = members[name][0]
        sampler = episode_sampler(val_set, config, 3, validation_seed(config) + 1000)
        started = time.perf_counter()
        member_logits_on_episodes(Ensemble(members=[learner]), val_set, sampler, progress=False)
        return (time.perf_counter() - started) / 3
    seconds = {name: cache.get_or_run(f"omniglot/seconds/{name}/{digest}", lambda name=name: timing(name))
               for name in members}
    usable = [n for n in members if seconds[n] <= MAX_SECONDS_PER_EPISODE]

    # 2. member scores on the validation episodes (cached as a tensor file beside the cache)
    val_path = cache.path.with_name(f"omniglot_val_{'_'.join(usable)}_{val_episodes}_{digest}.pt")
    if val_path.is_file():
        val = torch.load(val_path, weights_only=True)
    else:
        sampler = episode_sampler(val_set, config, config.val_episodes, validation_seed(config))
        scores, labels = member_logits_on_episodes(Ensemble(members=[members[n][0] for n in usable], names=usable),
                                                   val_set, sampler, progress=not args.quiet)
        val = {"scores": torch.stack(scores), "labels": torch.stack(labels)}
        torch.save(val, val_path)
    val_scores, val_labels = list(val["scores"]), list(val["labels"])
    val_accuracy = {n: 100.0 * float((val["scores"][:, i].argmax(2) == val["labels"]).double().mean())
                    for i, n in enumerate(usable)}

    def ensemble(names, combine):
        index = [usable.index(n) for n in names]
        return Ensemble(members=[members[n][0] for n in names], names=list(names), combine=combine).fit_combiner(
            [s[index] for s in val_scores], val_labels)

    # 3. mean_prob over every usable member on validation; its zero weights drop members
    full = ensemble(usable, "mean_prob")
    weights = dict(zip(usable, full.combiner.weights_.tolist()))
    kept = [n for n in usable if weights[n] > 0]
    results = {"members": {n: {"seconds_per_episode": seconds[n], "val_accuracy": val_accuracy.get(n),
                               "checkpoint": relative(members[n][2]),
                               "settings": settings.get(n, {}), "used": n in usable} for n in members},
               "val_weights_all": weights, "kept": kept, "val_episodes": val_episodes, "test_episodes": test_episodes,
               "val_seed": validation_seed(config), "test_seed": config.test_seed, "members_digest": digest}
    test_sampler = episode_sampler(test_set, config, config.test_episodes, config.test_seed)
    # v1 (first run): stacking with C = 1; v2: C chosen by cross-validation on the validation items
    first = cache.values.get(f"omniglot/stacking/{'_'.join(usable)}/{val_episodes}/{test_episodes}")
    if first is not None:
        results["first_run"] = {"stacking": {k: first[k] for k in ("accuracy", "ci95", "combiner")}}
    for key, names, combine in (("stacking", usable, "stacking-cv"), ("mean_prob", kept, "mean_prob")):
        def run(names=names, combine=combine.removesuffix("-cv")):
            learner = ensemble(names, combine)
            report = evaluate(learner, test_set, test_sampler, progress=not args.quiet)
            return {**few_shot_summary(report), "names": list(names), "combiner": learner.describe(),
                    "temperatures": learner.combiner.temperatures_.tolist(),
                    "weights": learner.combiner.weights_.tolist() if combine == "mean_prob" else None,
                    "coef": learner.combiner.coef_.tolist() if combine == "stacking" else None}
        results[key] = cache.get_or_run(f"omniglot/{combine}/{'_'.join(names)}/{val_episodes}/{test_episodes}/{digest}",
                                        run)
    return results


def earlier_cub_runs(previous: dict, features: dict, params: dict[str, dict]) -> list[dict]:
    """The superseded CUB-50 ensembles, oldest first, for the record: those ``previous`` (the last report's
    ``cub50`` part, with its ``run``) keeps, plus itself when it had other features, members or member
    hyper-parameters (``params``: member -> hyper-parameters) than this run."""
    earlier = list(previous.get("earlier", []))
    if "first_run" in previous:  # v1: one held-out split, stacking with C = 1 (same features and members as v2)
        from ensembles_table import FIRST_CUB_RUN

        earlier.append({"what": FIRST_CUB_RUN, **previous["first_run"]})
    own = previous.get("features", {"heads": "classes", "weighting": "fixed"})
    recipe = lambda f: {k: v for k, v in f.items() if k != "why"}  # noqa: E731 (heads, weighting, e.g. epochs)
    if recipe(own) != recipe(features) or previous["params"] != params:
        singles = previous["singles"]
        best = max(singles, key=lambda n: singles[n]["t1"])
        changed = [f"{n} {json.dumps(p)}" for n, p in previous["params"].items() if n in params and params[n] != p]
        more = "".join(f", {k} {v}" for k, v in recipe(own).items() if k not in ("heads", "weighting"))
        earlier.append({"what": f"features {own['heads']} ({own['weighting']} weights{more}), members "
                                f"{', '.join(previous['params'])}"
                                + (f", member hyper-parameters {'; '.join(changed)}" if changed else ""),
                        "run": previous.get("run", {}),
                        "best_single": {"name": best, "t1": singles[best]["t1"]},
                        **{c: {k: previous[c][k] for k in ("t1", "u", "s", "h", "calibrated_h")}
                           for c in ("mean_prob", "stacking")}})
    return earlier


def member_name(method: str, semantics: str) -> str:
    """A CUB-50 member's name: the learner's on attributes, ``<learner>@<semantics>`` on any other semantics."""
    return method if semantics == "attributes" else f"{method}@{semantics}"


def cub_member_key(name: str, params: dict) -> str:
    """A zero-shot member's cache key: its name and hyper-parameters, so that new choices in zsl_cub50.json are
    scored afresh (a member on its defaults keeps the bare name of the earlier keys)."""
    return name + (json.dumps(params, sort_keys=True) if params else "")


def run_cub50(args, cache: Cache, previous: dict | None = None, semantics: tuple[str, ...] = ("attributes",)) -> dict:
    """The CUB-50 ensembles of every zero-shot learner on each of ``semantics`` (``attributes``, ``text``): with more
    than one, the data carries ``attributes+text`` and each member reads its own block (``SemanticBlock``); a
    member on text is named ``<learner>@text``."""
    import copy

    from fewzero.ensemble import ZeroShotEnsemble
    from fewzero.ensemble_setup import zero_shot_member
    from fewzero.evaluate_zsl import evaluate_zero_shot
    from fewzero.zsl.loaders import load_zero_shot
    from zsl_common import table_data_options, table_params

    table = json.loads((ROOT / "paper_results/zsl_cub50.json").read_text())
    features = table["chosen_features"]
    member = {member_name(m, sem): (m, sem) for sem in semantics for m in ZSL_MEMBERS if m in table["results"][sem]}
    # each member as zsl_cub50 ran it: its fixed settings (gcnzsl's class graph) and the values validation chose
    params = {n: table_params(table, m, sem) for n, (m, sem) in member.items()}
    names = list(member)
    # the features of the table whose hyper-parameters the members take
    options = {**table_data_options(table), **({"image_size": 32, "epochs": 1} if args.quick else {})}
    kind = "+".join(semantics)
    data = load_zero_shot("cub50", semantics=kind, progress=not args.quiet, **options)

    def build(name):
        learner_name, sem = member[name]
        spec = {"method": learner_name, "params": params[name], **({"semantics": sem} if len(semantics) > 1 else {})}
        return zero_shot_member(spec, data, seed=0, progress=False)

    def summary(report) -> dict:
        return {k: getattr(report, k) for k in ("t1", "u", "s", "h", "calibrated_u", "calibrated_s", "calibrated_h",
                                                 "gamma", "ausuc", "seconds", "members", "disagreement")}
    beyond = {k: v for k, v in table_data_options(table).items() if k not in ("heads", "weighting")}  # e.g. epochs
    tag = ("quick" if args.quick else "full") + f"/{features['heads']}|{features['weighting']}" + (
        f"|{json.dumps(beyond, sort_keys=True)}" if beyond else "") + ("" if kind == "attributes" else f"|{kind}")
    features = {**features, **beyond}
    keys = {n: cub_member_key(n, params[n]) for n in names}
    singles = {n: cache.get_or_run(f"cub50/{tag}/single/{keys[n]}", lambda n=n: summary(
        evaluate_zero_shot(build(n), data, seed=0))) for n in names}
    results = {"params": params, "singles": singles, "features": features, "semantics": list(semantics),
               # what zsl_cub50.md said when this run read it
               "zsl_table_t1": {n: table["results"][sem][m]["t1"] for n, (m, sem) in member.items()},
               "data": {k: v for k, v in data.info.items() if isinstance(v, (str, int, float, bool))}}
    if previous is not None:
        results["earlier"] = earlier_cub_runs(previous, features, params)
    for combine in args.combiners:
        def run(combine=combine):
            learner = ZeroShotEnsemble([build(n) for n in names], names=names, combine=combine, seed=0, splits=3)
            report = evaluate_zero_shot(learner, data, seed=0)
            fitted = copy.deepcopy(learner.combiner)
            return {**summary(report), "combiner": learner.describe(),
                    "held_out_classes": [[data.class_names[c] for c in data.seen_classes[held].tolist()]
                                         for held in learner.held_out_classes_],
                    "weights": fitted.weights_.tolist() if combine == "mean_prob" else None,
                    "coef": fitted.coef_.tolist() if combine == "stacking" else None}
        results[combine] = cache.get_or_run(f"cub50/{tag}/{combine}-v2/{'_'.join(keys[n] for n in names)}", run)
    return results


def last_run_of(meta: dict, part: str) -> dict:
    """(command, commit, date) of the recorded run that last wrote ``part`` (``meta``: a report's provenance)."""
    from ensembles_table import parts_of

    for run in [meta, *reversed(meta.get("previous_runs", []))]:
        if part in parts_of(run):
            return {k: run.get(k) for k in ("command", "commit", "date")}
    return {}


COMBINERS = ("mean_prob", "stacking")
CUB_PARTS = {"cub50": ("attributes",), "cub50_both": ("attributes", "text")}  # part -> the members' semantics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "paper_results")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "ensembles" / "parts.json")
    parser.add_argument("--part", choices=("omniglot", "cub50", "cub50_both", "both"), default="both",
                        help="both: omniglot and cub50 (members on attributes); cub50_both: CUB-50 with every "
                             "learner on attributes and on text as members")
    parser.add_argument("--val-episodes", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="4 episodes, tiny CUB features; results not final")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the .json (no evaluation)")
    parser.add_argument("--note", default="", help="conditions worth recording (e.g. other jobs on the machine)")
    parser.add_argument("--combiners", nargs="+", choices=COMBINERS, default=list(COMBINERS),
                        help="CUB-50: run only these combiners, writing --cache only (a share of the work for one "
                             "process); a run of both, with --absorb, writes the table")
    parser.add_argument("--absorb", nargs="+", type=Path, default=[], metavar="CACHE",
                        help="first take the results of these caches (written by --combiners shares) into --cache")
    args = parser.parse_args()

    from ensembles_table import render, write_table

    if args.render_only:
        return render(args.out)
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    cache = Cache(args.cache)
    for other in args.absorb:
        print(f"{other}: {cache.absorb(other)} results taken into {args.cache}")
    started = provenance()
    if set(args.combiners) != set(COMBINERS):
        if args.part not in CUB_PARTS:
            raise SystemExit("--combiners is a share of a CUB-50 part: pass --part cub50 or cub50_both")
        run_cub50(args, cache, semantics=CUB_PARTS[args.part])
        return print(f"{', '.join(args.combiners)} in {args.cache}; the table needs both combiners (--absorb it)")
    results = {}
    if args.part in ("omniglot", "both"):
        results["omniglot"] = run_omniglot(args, cache)
    for part in {"both": ["cub50"], "omniglot": []}.get(args.part, [args.part]):
        semantics = CUB_PARTS[part]
        stored = args.out / "ensembles.json"
        before = json.loads(stored.read_text()) if stored.is_file() and not args.quick else None
        previous = before["results"].get(part) if before else None
        if previous is not None and "run" not in previous:
            previous["run"] = last_run_of(before["provenance"], part)
        results[part] = run_cub50(args, cache, previous, semantics)
        results[part]["run"] = {k: started[k] for k in ("command", "commit", "date")}
    write_table(args.out, results, {**started, "finished": provenance()["date"], "note": args.note,
                                    "quick": args.quick, "targets": TARGETS,
                                    "max_seconds_per_episode": MAX_SECONDS_PER_EPISODE})


if __name__ == "__main__":
    main()
