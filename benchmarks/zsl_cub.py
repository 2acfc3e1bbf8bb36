"""Zero-shot CUB-50: every registered zero-shot learner on features learned from the images of CUB classes
001-050, in three parts (each resumable: finished results are kept in ``--cache``):

    python benchmarks/zsl_cub.py                       # all parts (hours on 2 CPUs the first time)
    python benchmarks/zsl_cub.py --parts ablation      # which multi-task heads give the best features
    python benchmarks/zsl_cub.py --parts proposed      # the proposed 40/10 split: 3 semantics, headline seeds
    python benchmarks/zsl_cub.py --parts splits        # 5 seeded random 40/10 class splits, features per split
    python benchmarks/zsl_cub.py --render-only         # rewrite the .md from the .json

On two cores, share a part among processes with their own caches, then let one run take their results (the
sharing processes write elsewhere, so they are told the features the ablation chose):

    python benchmarks/zsl_cub.py --parts splits --split-ids 1 2 3 --heads classes+attributes --cache runs/a.json --out /tmp/a &
    python benchmarks/zsl_cub.py --parts splits --split-ids 4 5 --heads classes+attributes --cache runs/b.json --out /tmp/b
    python benchmarks/zsl_cub.py --parts splits --absorb runs/a.json runs/b.json   # reads every result back

**ablation**: the feature backbone (``fewzero.zsl.features``, trained on the seen classes' trainval images only)
with each set of multi-task heads in ``FEATURE_CONFIGS``; four fast embedding learners are tuned and evaluated on
each, and the configuration with the best mean *validation* T1 becomes the features of the other parts.
**proposed**: every learner x {attributes, text, attributes+text} on the proposed split (Xian et al.); the
headline rows are rerun with learner seeds 1 and 2. **splits**: every learner on attributes over seeded random
40/10 class splits, features retrained on each split's seen classes. Hyper-parameters are chosen on validation
classes only (``zsl_common.tune``); every number comes from ``fewzero.evaluate_zsl.evaluate_zero_shot``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fewzero.atomic import write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import ROOT, flag_values, provenance, standing_runs  # noqa: E402
from result_cache import Cache  # noqa: E402
from zsl_common import FIXED, GBU, GBU_PROTOCOL, GBU_SOURCE, GRIDS, run_learners  # noqa: E402
from zsl_cub_report import GENERATIVE, render  # noqa: E402

SEMANTICS = ("attributes", "text", "attributes+text")
PARTS = ("ablation", "proposed", "splits")
# ablation label -> (heads, loss weighting) of the feature backbone
FEATURE_CONFIGS = {
    "CE": ("classes", "fixed"),
    "CE + attributes": ("classes+attributes", "fixed"),
    "CE + rotation": ("classes+rotation", "fixed"),
    "CE + attributes + rotation": ("classes+attributes+rotation", "fixed"),
    "CE + attributes + rotation, uncertainty weights": ("classes+attributes+rotation", "uncertainty"),
}
ABLATION_LEARNERS = ("eszsl", "ale", "sje", "devise")
HEADLINE_SEEDS = (1, 2)


class Runner:
    """Loads CUB-50 under one feature configuration and runs learners on it, every result cached by its key."""

    def __init__(self, args, options: dict, cache: Cache):
        self.args, self.options, self.cache = args, options, cache

    def data(self, kind: str, heads: str, weighting: str, split: int = 0, blind: bool = False):
        """CUB-50 features (``blind``: from a backbone that never saw the validation classes either)."""
        from fewzero.zsl.loaders import load_zero_shot

        options = {k: v for k, v in self.options.items() if k != "val_blind"}
        return load_zero_shot("cub50", kind, self.args.data_root, progress=True, heads=heads, weighting=weighting,
                              class_split_seed=split, val_blind=blind, **options)

    def tuning_data(self, kind: str, heads: str, weighting: str, split: int = 0):
        """The features hyper-parameters are chosen on: with --val-blind those of a backbone that never saw the
        validation classes (as the test's features never saw the unseen ones); else None (the test's features)."""
        return self.data(kind, heads, weighting, split, blind=True) if self.options.get("val_blind") else None

    def run(self, data, names, kind: str, key: str, seed: int, curves: Path | None = None, tune_data=None) -> dict:
        fixed = {"gcnzsl": {"graph": class_graph(data)}} if "gcnzsl" in names else None
        out = {}
        for name in names:
            out[name] = self.cache.get_or_run(f"{key}|{kind}|{name}|seed{seed}", lambda: run_learners(
                data, seed, not self.args.no_tune, curves, names=[name], label=kind, fixed=fixed,
                tune_data=tune_data)[name])
        return out


def class_graph(data):
    """The class graph of gcnzsl on ``data``: ``zsl_common.FIXED``'s (the CUB taxonomy implied by the class names)."""
    from fewzero.zsl.graph_settings import resolve_graph

    return resolve_graph(FIXED["gcnzsl"], data)["graph"]


def features_facts(data) -> dict:
    return {k: v for k, v in data.info["features"].items() if k not in ("cached", "history")} | {
        "last_epoch": data.info["features"].get("history", [{}])[-1]}


def ablation(runner: Runner, configs: dict, learners) -> dict:
    rows = {}
    for label, (heads, weighting) in configs.items():
        data = runner.data("attributes", heads, weighting)
        results = runner.run(data, learners, "attributes", f"ablation|{heads}|{weighting}", 0,
                             tune_data=runner.tuning_data("attributes", heads, weighting))
        val = [r["val_t1"] for r in results.values() if r["val_t1"] is not None]
        rows[label] = {"heads": heads, "weighting": weighting, "features": features_facts(data), "results": results,
                       "mean_val_t1": sum(val) / len(val) if val else None,
                       "val_blind": bool(runner.options.get("val_blind"))}
    return rows


def chosen_features(args, rows: dict | None) -> tuple[str, str, str]:
    """(heads, weighting, why): given on the command line, else the ablation's best mean validation T1."""
    if args.heads:
        return args.heads, args.weighting, "given on the command line"
    if not rows:
        return "classes", "fixed", "plain cross-entropy (no ablation run)"
    label = max(rows, key=lambda k: rows[k]["mean_val_t1"] if rows[k]["mean_val_t1"] is not None else -1)
    return rows[label]["heads"], rows[label]["weighting"], f"best mean validation T1 in the ablation ({label})"


def proposed(runner: Runner, heads: str, weighting: str, names, out: Path | None, kinds=SEMANTICS,
             seeds=HEADLINE_SEEDS, only_best: bool = False) -> dict:
    results, described, graphs, features = {}, {}, {}, None
    curves = None if out is None else out.with_name(out.name + "_curves")
    key = f"proposed|{heads}|{weighting}"
    datasets, tuning = {}, {}
    for kind in kinds:
        data = datasets[kind] = runner.data(kind, heads, weighting)
        tuning[kind] = runner.tuning_data(kind, heads, weighting)
        described[kind], features = data.info["semantics"], features_facts(data)
        results[kind] = runner.run(data, names, kind, key, 0, curves, tune_data=tuning[kind])
        if "gcnzsl" in names:
            graphs[kind] = class_graph(data).statistics()
    headline = {}
    for row in headline_rows(results)[:2 if only_best else None]:
        kind, name = row
        runs = [results[kind][name]] + [
            runner.run(datasets[kind], [name], kind, key, s, tune_data=tuning[kind])[name] for s in seeds]
        headline[f"{name}|{kind}"] = [{k: r[k] for k in ("t1", "u", "s", "h", "calibrated_h")} for r in runs]
    for rows in results.values():
        for r in rows.values():
            if r["curve_png"] and Path(r["curve_png"]).resolve().is_relative_to(ROOT):
                r["curve_png"] = str(Path(r["curve_png"]).resolve().relative_to(ROOT))
    data = datasets["attributes"]
    return {"semantics": described, "features": features, "results": results, "headline": headline,
            "headline_selection": "best T1 and best calibrated H" if only_best else
            "best T1, best calibrated H, and the best generator and embedding learner of each semantics",
            "graphs": graphs, "dataset": {
                "classes": len(data.class_names), "seen": data.seen_classes.numel(),
                "unseen": data.unseen_classes.numel(), "train_images": data.train_y.numel(),
                "test_seen_images": data.test_seen_y.numel(), "test_unseen_images": data.test_unseen_y.numel(),
                "val_classes": [data.class_names[c] for c in data.val_classes.tolist()],
                "unseen_classes": [data.class_names[c] for c in data.unseen_classes.tolist()]}}


def headline_rows(results: dict) -> list[tuple[str, str]]:
    """(semantics, learner) of the best T1, the best calibrated H, and the best generator and best embedding
    learner by calibrated H on each semantics."""
    flat = [(r["t1"], r["calibrated_h"], kind, name) for kind, rows in results.items() for name, r in rows.items()]
    rows = [max(flat)[2:], max(flat, key=lambda t: t[1])[2:]]
    for kind, table in results.items():
        for group in (lambda n: n in GENERATIVE, lambda n: n not in GENERATIVE):
            members = [n for n in table if group(n)]
            if members:
                rows.append((kind, max(members, key=lambda n: table[n]["calibrated_h"])))
    return list(dict.fromkeys(rows))


def splits(runner: Runner, heads: str, weighting: str, names, ids) -> dict:
    per_split = {}
    for split in ids:
        data = runner.data("attributes", heads, weighting, split)
        results = runner.run(data, names, "attributes", f"split{split}|{heads}|{weighting}", 0,
                             tune_data=runner.tuning_data("attributes", heads, weighting, split))
        per_split[split] = {"unseen_classes": [data.class_names[c] for c in data.unseen_classes.tolist()],
                            "feature_train_seconds": data.info["features"]["train_seconds"],
                            "val_blind": bool(runner.options.get("val_blind")),
                            "results": {n: {k: r[k] for k in ("t1", "h", "calibrated_h", "val_t1", "params")}
                                        for n, r in results.items()}}
    return per_split


def earlier_runs(previous: dict, parts: list[str]) -> list[dict]:
    """The runs whose parts a run of ``parts`` keeps from the ``previous`` report: its own run and the ones it kept,
    less those whose every part this run redoes (a run that records no parts, nor names them in its command, is
    kept unless this run redoes all)."""
    if set(parts) == set(PARTS):
        return []
    runs = previous.get("earlier_runs", []) + ([{**previous["provenance"], "note": previous.get("note", "")}]
                                               if "provenance" in previous else [])
    return [run for run, _ in standing_runs(runs, parts, parts_of_run)]


def parts_of_run(run: dict) -> list[str]:
    """The parts a recorded run wrote: its record's, else the ``--parts`` of its command (older records), else
    unknown (``["?"]``)."""
    return run.get("parts") or flag_values(run.get("command", ""), "--parts") or ["?"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30, help="feature backbone training epochs")
    parser.add_argument("--backbone", default="resnet_small")
    parser.add_argument("--no-bbox-crop", action="store_true", help="use whole images, not bounding-box crops")
    parser.add_argument("--text-source", default="both", choices=("names", "descriptions", "both"))
    parser.add_argument("--heads", default=None, help="feature heads (default: the ablation's choice)")
    parser.add_argument("--weighting", default="fixed", help="feature loss weighting, with --heads")
    parser.add_argument("--semantics", nargs="+", default=list(SEMANTICS), choices=SEMANTICS,
                        help="class semantics of the proposed-split tables")
    parser.add_argument("--headline-seeds", nargs="*", type=int, default=list(HEADLINE_SEEDS),
                        help="learner seeds the headline rows are rerun with (beside 0; none: no reruns)")
    parser.add_argument("--headline-best-only", action="store_true",
                        help="rerun only the best-T1 and best-calibrated-H rows with the headline seeds")
    parser.add_argument("--ablation", nargs="+", default=list(FEATURE_CONFIGS), choices=list(FEATURE_CONFIGS),
                        help="feature configurations of the ablation")
    parser.add_argument("--ablation-methods", nargs="+", default=list(ABLATION_LEARNERS),
                        help="learners that score each feature configuration of the ablation")
    parser.add_argument("--splits", type=int, default=5, help="random 40/10 class splits")
    parser.add_argument("--split-ids", nargs="+", type=int, default=None,
                        help="run only these of the random splits (1..--splits), e.g. to share them out among "
                             "processes that each write their own --cache")
    parser.add_argument("--seed", type=int, default=0, help="feature backbone seed")
    parser.add_argument("--val-blind", action="store_true",
                        help="choose hyper-parameters and feature recipes on features of a backbone that never saw "
                             "the validation classes (a second backbone); test on features of all seen classes")
    parser.add_argument("--no-tune", action="store_true", help="use every learner's default hyper-parameters")
    parser.add_argument("--methods", nargs="+", default=None, help="learners (default: every registered one)")
    parser.add_argument("--out", default=str(ROOT / "paper_results" / "zsl_cub50"), help="output path stem")
    parser.add_argument("--cache", default=str(ROOT / "runs" / "zsl_cub" / "results.json"),
                        help="finished results, so that a stopped run continues")
    parser.add_argument("--absorb", nargs="+", default=[], metavar="CACHE",
                        help="first take the results of these caches (written by processes that each ran a share, "
                             "e.g. --methods or --split-ids, with their own --cache) into --cache")
    parser.add_argument("--note", default="", help="conditions worth recording (e.g. other jobs on the machine)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the existing .json")
    args = parser.parse_args(argv)
    if args.split_ids and not set(args.split_ids) <= set(range(1, args.splits + 1)):
        parser.error(f"--split-ids must lie in 1..{args.splits} (--splits)")
    out = Path(args.out)
    if args.render_only:
        write_text(out.with_suffix(".md"), render(json.loads(out.with_suffix(".json").read_text())))
        return {}
    from fewzero.registry import ZERO_SHOT

    names = args.methods or ZERO_SHOT.available()
    started = provenance()
    options = {"image_size": args.image_size, "epochs": args.epochs, "backbone": args.backbone,
               "bbox_crop": not args.no_bbox_crop, "seed": args.seed, "text_source": args.text_source,
               **({"val_blind": True} if args.val_blind else {})}
    cache = Cache(Path(args.cache))
    cache.get_or_run("options", lambda: options)
    if cache.values["options"] != options:
        raise SystemExit(f"{args.cache} holds results of other settings: pass another --cache")
    for other in args.absorb:
        print(f"{other}: {cache.absorb(Path(other), must_match=('options',))} results taken into {args.cache}")
    runner = Runner(args, options, cache)
    previous = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").is_file() else {}
    grids = {name: GRIDS[name] for name in sorted(set(names) | set(args.ablation_methods)) if name in GRIDS}
    report = {"benchmark": "cub50 zero-shot", "config": {**options, "tune": not args.no_tune, "grids": grids},
              "seed": args.seed, "published": {"source": GBU_SOURCE, "protocol": GBU_PROTOCOL, "results": {
                  m: dict(zip(("t1", "u", "s", "h"), v["CUB"])) for m, v in GBU.items()}}}
    rows = ablation(runner, {k: FEATURE_CONFIGS[k] for k in args.ablation}, args.ablation_methods) if "ablation" in args.parts \
        else previous.get("ablation")
    heads, weighting, why = chosen_features(args, rows)
    report.update(ablation=rows, chosen_features={"heads": heads, "weighting": weighting, "why": why})
    if "proposed" in args.parts:
        report.update(proposed(runner, heads, weighting, names, out, args.semantics, args.headline_seeds,
                               args.headline_best_only))
    if "splits" in args.parts:
        report["splits"] = splits(runner, heads, weighting, names, args.split_ids or range(1, args.splits + 1))
    for key in ("semantics", "features", "results", "headline", "headline_selection", "graphs", "dataset", "splits"):
        if key not in report and key in previous:
            report[key] = previous[key]
    report.update(provenance={**started, "finished": provenance()["date"], "parts": args.parts}, note=args.note,
                  earlier_runs=earlier_runs(previous, args.parts))
    write_report(out, report)
    return report


def write_report(out: Path, report: dict) -> None:
    """``out``.json, and ``out``.md when the report holds the proposed split's results that the table is built on
    (a process that ran a share of the splits into its own --out has none)."""
    write_text(out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    if "results" not in report or "dataset" not in report:
        print(f"wrote {out}.json; no {out}.md: the table needs the proposed split's results (--parts proposed, "
              "or the --out of a run that has them)")
        return
    write_text(out.with_suffix(".md"), render(report))
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
