"""The markdown of ``benchmarks/zsl_cub.py``: ablation, proposed-split tables, headline seeds, random splits."""
from __future__ import annotations

import json
import shlex
import statistics

from zsl_common import fmt

GENERATIVE = ("fclswgan", "cvae", "tfvaegan")
TABLE = ["| learner | T1 | u | s | H | cal. u | cal. s | cal. H | AUSUC | time (s) | hyper-parameters |",
         "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.1f}"


def generative_gap(results: dict) -> list[str]:
    """One line per semantics: best generator vs best embedding learner, plain and calibrated H."""
    lines = []
    for kind, rows in results.items():
        gen = {n: r for n, r in rows.items() if n in GENERATIVE}
        emb = {n: r for n, r in rows.items() if n not in GENERATIVE}
        if not gen or not emb:
            continue
        parts = []
        for key, label in (("h", "H"), ("calibrated_h", "calibrated H")):
            g = max(gen, key=lambda n: gen[n][key])
            e = max(emb, key=lambda n: emb[n][key])
            parts.append(f"{label} {gen[g][key]:.1f} ({g}) vs {emb[e][key]:.1f} ({e}): "
                         f"{gen[g][key] - emb[e][key]:+.1f}")
        lines.append(f"- {kind}: best generator vs best embedding learner, " + "; ".join(parts))
    return ["Generative vs embedding learners (same features):", ""] + lines + [""] if lines else []


def ablation_section(out: dict) -> list[str]:
    rows = out.get("ablation")
    if not rows:
        return []
    learners = list(next(iter(rows.values()))["results"])
    lines = ["## Which feature heads gave what (ablation, attributes semantics)", "",
             "The feature backbone trained with each set of `fewzero.multitask` heads (same data, epochs and seed); "
             "four fast embedding learners tuned on the validation classes and evaluated on each. The features of "
             f"the tables below: **{out['chosen_features']['heads']}, {out['chosen_features']['weighting']} "
             f"weights** ({out['chosen_features']['why']}). Validation T1 is the mean over the four learners of "
             "their best validation T1 (validation classes only); test columns: T1 / calibrated H. "
             + ("Validation T1 here comes from features of a second backbone trained without the validation classes "
                "(--val-blind)." if all(row.get("val_blind") for row in rows.values()) else
                "**Validation T1 here comes from features whose backbone trained on the validation classes** (this "
                "ablation ran before --val-blind): it measures how well the learners separate classes the features "
                "were fitted to, not transfer to new ones, and rates every configuration far above its test T1."),
             "",
             "| features | mean val. T1 | " + " | ".join(f"{n} T1 / cal. H" for n in learners) +
             " | train (s) | last-epoch training metrics |",
             "| --- | --- | " + " | ".join("---" for _ in learners) + " | --- | --- |"]
    for label, row in rows.items():
        last = row["features"].get("last_epoch", {})
        metrics = ", ".join(f"{k} {v:.2f}" for k, v in last.items() if k.endswith(("/metric", "/loss", "/weight"))
                            and not k.startswith("total"))
        cells = " | ".join(f"{fmt(r['t1'])} / {fmt(r['calibrated_h'])}" for r in row["results"].values())
        lines.append(f"| {label} | {fmt(row['mean_val_t1'])} | {cells} | {row['features']['train_seconds']:.0f} | "
                     f"{metrics} |")
    return lines + ["", "The image size and training length of these features, against other recipes by the same "
                        "validation-class measure: [zsl_cub50_recipes.md](zsl_cub50_recipes.md).", ""]


def semantics_tables(out: dict) -> list[str]:
    lines = []
    for kind, described in out["semantics"].items():
        lines += [f"## {kind} semantics: {described}", "", *TABLE]
        for name, r in out["results"][kind].items():
            params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "defaults"
            lines.append(f"| {name} | {fmt(r['t1'])} | {fmt(r['u'])} | {fmt(r['s'])} | {fmt(r['h'])} | "
                         f"{fmt(r['calibrated_u'])} | {fmt(r['calibrated_s'])} | {fmt(r['calibrated_h'])} | "
                         f"{r['ausuc']:.3f} | {r['seconds']:.0f} | {params} |")
        lines.append("")
    return lines


def headline_section(out: dict) -> list[str]:
    if not out.get("headline"):
        return []
    runs = len(next(iter(out["headline"].values())))
    lines = [f"## Headline rows over {runs} seeds", "",
             f"Rows ({out.get('headline_selection', 'best T1, best calibrated H')}) "
             f"rerun with learner seeds 0-{runs - 1} (the seed of the learner, of its validation hold-out and of "
             "calibration; same features). Mean ± std.", "",
             "| learner | semantics | T1 | H | cal. H |", "| --- | --- | --- | --- | --- |"]
    for key, runs in out["headline"].items():
        name, kind = key.split("|")
        lines.append(f"| {name} | {kind} | {mean_std([r['t1'] for r in runs])} | "
                     f"{mean_std([r['h'] for r in runs])} | {mean_std([r['calibrated_h'] for r in runs])} |")
    return lines + [""]


def splits_section(out: dict) -> list[str]:
    per_split = out.get("splits")
    if not per_split:
        return []
    names = list(next(iter(per_split.values()))["results"])
    ranked = sorted(names, key=lambda n: -statistics.mean(s["results"][n]["t1"] for s in per_split.values()))
    proposed = out.get("results", {}).get("attributes", {})
    order = sorted(proposed, key=lambda n: -proposed[n]["t1"]) if proposed else []
    lines = [f"## Over {len(per_split)} seeded random 40/10 class splits (attributes)", "",
             f"Each split (`class_split_seed` {', '.join(str(k) for k in per_split)} of "
             "`fewzero.zsl.loaders.random_class_split`): 10 random unseen "
             "classes, 8 validation classes drawn from the 40 seen ones, a fifth of each seen class's images as its "
             "test images; the feature backbone retrained on that split's seen training images only; every learner "
             "tuned on that split's validation classes"
             + (" (on the features of a second backbone trained without them, --val-blind)"
                if all(s.get("val_blind") for s in per_split.values()) else
                " (on features whose backbone trained on them: these splits ran before --val-blind)"
                if out["config"].get("val_blind") else "") +
             ". Mean ± std over the splits; rank by mean T1, beside the rank "
             "on the proposed split. Claims that one learner beats another rest on these columns. The splits "
             "differ in difficulty far more than the learners do, so the paired column compares each learner "
             "with the first-ranked one split by split (mean ± std of the differences; a learner is behind it "
             "only where the mean is below zero by more than the std).", "",
             f"| learner | T1 | cal. H | rank | rank on proposed split | T1 − {ranked[0]}'s, paired | T1 per split |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    best = [s["results"][ranked[0]]["t1"] for s in per_split.values()]
    for rank, name in enumerate(ranked, 1):
        t1 = [s["results"][name]["t1"] for s in per_split.values()]
        cal = [s["results"][name]["calibrated_h"] for s in per_split.values()]
        paired = "–" if rank == 1 else mean_std([a - b for a, b in zip(t1, best)])
        lines.append(f"| {name} | {mean_std(t1)} | {mean_std(cal)} | {rank} | "
                     f"{order.index(name) + 1 if name in order else '–'} | {paired} | "
                     f"{', '.join(f'{v:.1f}' for v in t1)} |")
    if proposed:
        split_best_h = max(names, key=lambda n: statistics.mean(s["results"][n]["calibrated_h"]
                                                                for s in per_split.values()))
        best_t1, best_h = order[0], max(proposed, key=lambda n: proposed[n]["calibrated_h"])
        lines += ["", f"Ahead on the proposed split (attributes): T1 {best_t1}, calibrated H {best_h}; ahead in the "
                  f"mean over the {len(per_split)} splits: T1 {ranked[0]}, calibrated H {split_best_h}: "
                  + ("the same learners." if (best_t1, best_h) == (ranked[0], split_best_h) else
                     "not the same learners.")]
    lines += ["", "Unseen classes per split: " + "; ".join(
        f"{k}: {', '.join(c.split('.', 1)[-1] for c in s['unseen_classes'])}" for k, s in per_split.items()), ""]
    return lines


def graph_section(out: dict) -> list[str]:
    if not out.get("graphs"):
        return []
    lines = ["## gcnzsl class graphs", "",
             "Built from the 50 class names only (`fewzero.zsl.class_graph.build_class_graph`, CUB taxonomy: classes "
             "sharing the last word of their name share a parent node); node features are the row's semantics; no "
             "image is used. k-NN edges in attribute space are left out: they lowered gcnzsl's validation T1 (see "
             "`FIXED` in benchmarks/zsl_common.py). Propagation (GCN or DGP) is tuned on the validation "
             "classes.", "", "| semantics | statistics |", "| --- | --- |"]
    for kind, stats in out["graphs"].items():
        lines.append(f"| {kind} | {', '.join(f'{k}: {v}' for k, v in stats.items())} |")
    return lines + [""]


def command_line(out: dict) -> list[str]:
    """How to score a cell of the tables with ``fewzero eval`` (same features, hyper-parameters and seed)."""
    from zsl_common import table_data_options

    kind, results = next(iter(out["results"].items()))
    name = max(results, key=lambda n: results[n]["t1"])
    sets = [*(f"data.{k}={v}" for k, v in table_data_options({**out, "chosen_features": out["features"]}).items()),
            *(f"{k}={_yaml(v)}" for k, v in learner_settings(name, results[name]["params"]).items())]
    return [f"A cell from the command line, e.g. {name} with {kind} semantics (T1 {fmt(results[name]['t1'])}): "
            f"`fewzero eval --method {name} --dataset cub50 --semantics {kind} "
            + " ".join(f"--set {shlex.quote(s)}" for s in sets) + "`. On the features this run cached the command "
            "gives the cell's number exactly; features trained anew (on another machine or thread count) round "
            "differently, and a learner's T1 moves by a few points with them (ensembles.md scores every learner on "
            "such a retraining, beside these numbers). Each learner's settings of the attributes table are also "
            "shipped as `configs/<learner>_cub50.yaml`, which the plain `fewzero eval --method <learner>` reads.", ""]


def learner_settings(name: str, params: dict) -> dict:
    """Every setting the run gave ``name``: each tuned key (the chosen value, or the learner's default where the
    run did not tune), then its fixed ones; spelt out so that no shipped config can change them."""
    from zsl_common import FIXED, GRIDS

    from fewzero.registry import ZERO_SHOT

    parameters = ZERO_SHOT.parameters(name)
    return {**{k: parameters[k].default for k in GRIDS.get(name, {})}, **params, **FIXED.get(name, {})}


def _yaml(value) -> str:
    """``value`` as ``--set`` parses it back (YAML; a mapping in flow style)."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip().removesuffix("...").strip()


def grid_lines(out: dict) -> list[str]:
    """The grids the run searched, one line per learner (runs before grids were recorded: none)."""
    grids = out["config"].get("grids") if out["config"]["tune"] else None
    return ["", "Grids (every combination is tried):", ""] + [
        f"- {name}: " + "; ".join(f"{key} {values}" for key, values in grid.items())
        for name, grid in sorted(grids.items())] if grids else []


def render(out: dict) -> str:
    d, f, prov, c = out["dataset"], out["features"], out["provenance"], out["config"]
    lines = ["# Zero-shot learning on CUB-50 (classes 001-050 of CUB-200-2011, proposed split)", "",
             f"{d['seen']} seen classes ({d['train_images']} training images, {d['test_seen_images']} seen test "
             f"images), {d['unseen']} unseen classes ({d['test_unseen_images']} test images). Accuracies are "
             "per-class mean top-1 in %: **T1** among the unseen classes; generalized **u** (unseen test images) and "
             "**s** (seen test images) searched over all 50 classes, **H** = 2us/(u+s); **cal. H** with calibrated "
             "stacking, the factor chosen on training items of the validation classes (never on test). "
             "All numbers come from `fewzero.evaluate_zsl.evaluate_zero_shot`.", "",
             *ablation_section(out), *semantics_tables(out)]
    flat = [(r["t1"], r["calibrated_h"], n, k) for k in out["results"] for n, r in out["results"][k].items()]
    best, best_h = max(flat), max(flat, key=lambda t: t[1])
    lines += [f"Best T1: {best[0]:.1f} ({best[2]}, {best[3]}); best calibrated H: {best_h[1]:.1f} "
              f"({best_h[2]}, {best_h[3]}). Chance T1 is {100 / d['unseen']:.0f} %. Time: seconds for the learner's "
              "fits in this run (validation fit when tuned, calibration fit, final fit) and its evaluation.", "",
              *generative_gap(out["results"]), *headline_section(out), *splits_section(out), *graph_section(out),
              "## Published numbers (a different protocol: not comparable)", "",
              f"{out['published']['source']}. Protocol: {out['published']['protocol']}. Their CUB has 50 unseen "
              "classes (T1 chance 2 %) and features pretrained on 1.2 M ImageNet images; ours has 10 unseen "
              "classes and features learned from 1,837 bird images.", "",
              "| learner | T1 | u | s | H |", "| --- | --- | --- | --- | --- |"]
    for name, r in out["published"]["results"].items():
        lines.append(f"| {name} | {fmt(r['t1'])} | {fmt(r['u'])} | {fmt(r['s'])} | {fmt(r['h'])} |")
    accuracy = f.get("last_epoch_train_accuracy")
    lines += ["", "## Features", "",
              f"`{f['backbone']}` trained from scratch ({f.get('heads', 'classes')} heads, {f.get('weighting', 'fixed')} "
              f"weights; {f['augmentation']}) on the {f['train_images']} trainval images of the {f['train_classes']} "
              f"seen classes only, input {f['input_size'][1]}x{f['input_size'][2]} "
              f"({'bounding-box crops' if c['bbox_crop'] else 'whole images'}), {f['epochs']} epochs, batch "
              f"{f['batch_size']}, SGD one-cycle lr {f['lr']}: {f['train_seconds']:.0f} s training + "
              f"{f['embed_seconds']:.0f} s embedding on {f['threads']} threads; {f['feature_dim']}-d features"
              + (f" (last-epoch training accuracy {accuracy:.1f} %)." if accuracy is not None else "."), "",
              *command_line(out), "## Tuning", "",
              ("Hyper-parameters: the best validation T1 over a small grid (benchmarks/zsl_common.py GRIDS), fitted "
               f"on the seen classes minus the {len(d['val_classes'])} validation classes (learners without a grid "
               "keep their defaults)" + (", on the features of a second backbone trained without the validation "
                                         "classes (--val-blind), so that they are as new to the features as the "
                                         "unseen classes are to the test's" if c.get("val_blind") else "")
               if c["tune"] else "Hyper-parameters: defaults") +
              f"; validation classes: {', '.join(d['val_classes'])}.", *grid_lines(out), "",
              "## Provenance", "", f"- command: `{prov['command']}`", f"- config: `{json.dumps({k: v for k, v in c.items() if k != 'grids'})}`",
              f"- seed: {out['seed']} (features); learner seeds 0 (tables), 0-2 (headline rows)",
              f"- commit: {prov['commit']}", f"- date: {prov['date']} (finished {prov['finished']})",
              f"- machine: {prov['machine']}",
              f"- load average at start (1 / 5 / 15 min): {prov.get('load_average', 'not recorded')}; feature "
              "training times are from the runs that built the feature caches"]
    if out.get("note"):
        lines.append(f"- note: {out['note']}")
    for run in out.get("earlier_runs", []):  # the parts this run read back from an earlier run's report
        lines.append(f"- earlier run (its parts kept): `{run['command']}` at {run['commit']}, {run['date']} "
                     f"(finished {run.get('finished', '?')})" + (f"; note: {run['note']}" if run.get("note") else ""))
    lines.append("")
    return "\n".join(lines)
