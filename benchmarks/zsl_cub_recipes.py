"""Would a larger input image or a longer training help the CUB-50 feature backbone?
``paper_results/zsl_cub50_recipes.{md,json}``.

    python benchmarks/zsl_cub_recipes.py                          # the default recipes (resumable: runs/zsl_cub/)
    python benchmarks/zsl_cub_recipes.py --recipes 64x30 128x30   # SIZExEPOCHS[sSEED]; 64x30 (the tables') required

For each recipe (image size in px x training epochs), the plain cross-entropy row of the zsl_cub.py ablation
(``--val-blind``): a backbone trained without the validation classes scores the four embedding learners' best
validation T1 (their hyper-parameters chosen there), and a backbone trained on all seen classes gives their test T1
and calibrated H. The tables of zsl_cub50.md change recipe only if another recipe's mean validation T1 beats theirs
by at least ``MARGIN`` points, a rule fixed before the first run; the test columns never decide. Rows of the
tables' recipe with other backbone seeds (``64x30s1``) only show how much a row moves with the seed: they are not
candidates (choosing a seed would be choosing noise).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from provenance import ROOT, provenance, relative

sys.path.insert(0, str(ROOT))

TABLE_RECIPE = "64x30"  # image size x epochs of zsl_cub50.md's tables
MARGIN = 1.0


def parse_recipe(text: str) -> tuple[int, int, int]:
    """'96x30' -> (96, 30, 0): image size, epochs, backbone seed ('64x30s2' -> seed 2)."""
    size, _, rest = text.partition("x")
    epochs, _, seed = rest.partition("s")
    if not (size.isdigit() and epochs.isdigit() and (seed.isdigit() or (not seed and "s" not in rest))):
        raise ValueError(f"recipe {text!r} is not SIZExEPOCHS or SIZExEPOCHSsSEED, e.g. 96x30 or 64x30s1")
    return int(size), int(epochs), int(seed or 0)


def run_folder(size: int, epochs: int, seed: int = 0) -> str:
    """The runs' stem of a recipe (the 30-epoch ones keep the names of the first runs: px64, px96)."""
    return f"px{size}" + ("" if epochs == 30 else f"_ep{epochs}") + (f"_s{seed}" if seed else "")


def run_recipe(recipe: str, runs: Path) -> dict:
    """The CE ablation row of ``recipe``, computed by zsl_cub.py (or read back from its cache)."""
    from zsl_cub import main as zsl_cub

    size, epochs, seed = parse_recipe(recipe)
    stem = runs / run_folder(size, epochs, seed)
    argv = ["--parts", "ablation", "--val-blind", "--ablation", "CE", "--image-size", str(size), "--epochs",
            str(epochs), *(["--seed", str(seed)] if seed else []), "--out", str(stem), "--cache", f"{stem}_cache.json"]
    report = zsl_cub(argv)
    shown = [relative(word) if word.startswith(str(runs)) else word for word in argv]
    return {"recipe": recipe, "row": report["ablation"]["CE"],
            "command": "python benchmarks/zsl_cub.py " + shlex.join(shown)}


def decision(rows: list[dict], table_recipe: str = TABLE_RECIPE, margin: float = MARGIN) -> dict:
    """The recipe the tables should use: ``table_recipe`` unless another beats its mean validation T1 by
    ``margin``."""
    by_recipe = {r["recipe"]: r["row"]["mean_val_t1"] for r in rows if parse_recipe(r["recipe"])[2] == 0}
    best = max(by_recipe, key=by_recipe.get)
    switch = best != table_recipe and by_recipe[best] >= by_recipe[table_recipe] + margin
    return {"recipe": best if switch else table_recipe, "best_val_recipe": best, "switch": switch,
            "gain": by_recipe[best] - by_recipe[table_recipe]}


def render(report: dict) -> str:
    rows, chosen, table = report["rows"], report["decision"], report["table_recipe"]
    learners = list(rows[0]["row"]["results"])
    lines = ["# CUB-50 features: would a larger image or a longer training help?", "",
             "The plain cross-entropy backbone (`resnet_small`, bounding-box crops) trained with each recipe: "
             "image size in px x training epochs, backbone seed 0 unless the recipe ends in sN (seed N). "
             "Validation T1: each learner's best T1 on the validation classes, "
             "from a second backbone trained without them (`--val-blind`), its hyper-parameters chosen there. Test: "
             "T1 and calibrated H on the 10 unseen classes, from the backbone trained on all 40 seen classes; "
             f"reported, never used to choose. Rule fixed before the runs: the tables of zsl_cub50.md ({table}) move "
             f"to another recipe only if its mean validation T1 is at least {report['margin']:g} point higher.", "",
             "| recipe | mean val. T1 | " + " | ".join(f"{n} val. T1" for n in learners) + " | "
             + " | ".join(f"{n} test T1 / cal. H" for n in learners) + " | train (s, all seen classes) |",
             "| --- " * (3 + 2 * len(learners)) + "|"]
    for entry in rows:
        row = entry["row"]
        results = row["results"]
        lines.append(f"| {entry['recipe']} | {row['mean_val_t1']:.1f} | "
                     + " | ".join(f"{results[n]['val_t1']:.1f}" for n in learners) + " | "
                     + " | ".join(f"{results[n]['t1']:.1f} / {results[n]['calibrated_h']:.1f}" for n in learners)
                     + f" | {row['features']['train_seconds']:.0f} |")
    verdict = f"{chosen['recipe']} replaces {table}" if chosen["switch"] else f"the tables stay at {table}"
    base = next(e["row"]["mean_val_t1"] for e in rows if e["recipe"] == table)
    gains = ", ".join(f"{e['recipe']} {e['row']['mean_val_t1'] - base:+.1f}" for e in rows
                      if e["recipe"] != table and parse_recipe(e["recipe"])[2] == 0)
    same = [e for e in rows if parse_recipe(e["recipe"])[:2] == parse_recipe(table)[:2]]
    spread = [e["row"]["mean_val_t1"] for e in same]
    noise = ([f"How much a row moves with the backbone seed alone: {table} with seeds "
              f"{', '.join(str(parse_recipe(e['recipe'])[2]) for e in same)} has mean validation T1 "
              f"{', '.join(f'{v:.1f}' for v in spread)} (range {max(spread) - min(spread):.1f} points).", ""]
             if len(same) > 1 else [])
    lines += ["", *noise, f"**Decision:** {verdict} (mean validation T1 against {table}: {gains}; rows of other "
              "seeds are not candidates).", "", "## Provenance", "",
              f"- command: `{report['provenance']['command']}`", f"- commit: {report['provenance']['commit']}",
              f"- date: {report['provenance']['date']}", f"- machine: {report['provenance']['machine']}",
              *(f"- {entry['recipe']}: `{entry['command']}` (train seconds from the run that built the feature "
                "cache, on a machine that other jobs shared)" for entry in rows), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=[TABLE_RECIPE, "64x30s1", "64x30s2", "96x30", "64x60"],
                        help="SIZExEPOCHS[sSEED]")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "zsl_cub"), help="the zsl_cub.py runs (resumable)")
    parser.add_argument("--out", default=str(ROOT / "paper_results" / "zsl_cub50_recipes"))
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the existing .json")
    args = parser.parse_args(argv)
    from fewzero.atomic import write_text

    out = Path(args.out)
    if args.render_only:
        write_text(out.with_suffix(".md"), render(json.loads(out.with_suffix(".json").read_text())))
        return {}
    for recipe in args.recipes:
        try:
            parse_recipe(recipe)
        except ValueError as error:
            parser.error(str(error))
    if TABLE_RECIPE not in args.recipes:
        parser.error(f"--recipes must include {TABLE_RECIPE}, the recipe the decision compares with")
    started = provenance()
    rows = [run_recipe(recipe, Path(args.runs)) for recipe in args.recipes]
    report = {"provenance": started, "table_recipe": TABLE_RECIPE, "margin": MARGIN, "rows": rows,
              "decision": decision(rows)}
    write_text(out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    write_text(out.with_suffix(".md"), render(report))
    print(f"wrote {out}.json and {out}.md: {report['decision']}")
    return report


if __name__ == "__main__":
    main()
