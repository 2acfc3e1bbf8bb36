"""Does a larger input image help the CUB-50 feature backbone? ``paper_results/zsl_cub50_image_size.{md,json}``.

    python benchmarks/zsl_cub_image_size.py                 # 64 and 96 px (resumable: runs/zsl_cub/px<size>*)
    python benchmarks/zsl_cub_image_size.py --sizes 64 96 128

For each size, the plain cross-entropy row of the zsl_cub.py ablation (``--val-blind``): a backbone trained without
the validation classes scores the four embedding learners' best validation T1 (their hyper-parameters chosen
there), and a backbone trained on all seen classes gives their test T1 and calibrated H. The size the tables of
zsl_cub50.md use changes only if another size's mean validation T1 beats it by at least ``MARGIN`` points, a rule
fixed before the first run; the test columns never decide.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from provenance import ROOT, provenance, relative

sys.path.insert(0, str(ROOT))

TABLE_SIZE = 64  # the image size of zsl_cub50.md's tables
MARGIN = 1.0


def run_size(size: int, runs: Path) -> dict:
    """The CE ablation row at ``size`` px, computed by zsl_cub.py (or read back from its cache)."""
    from zsl_cub import main as zsl_cub

    argv = ["--parts", "ablation", "--val-blind", "--ablation", "CE", "--image-size", str(size),
            "--out", str(runs / f"px{size}"), "--cache", str(runs / f"px{size}_cache.json")]
    report = zsl_cub(argv)
    shown = [relative(word) if word.startswith(str(runs)) else word for word in argv]
    return {"size": size, "row": report["ablation"]["CE"], "command": "python benchmarks/zsl_cub.py " + shlex.join(shown)}


def decision(rows: list[dict], table_size: int = TABLE_SIZE, margin: float = MARGIN) -> dict:
    """The size the tables should use: ``table_size`` unless another beats its mean validation T1 by ``margin``."""
    by_size = {r["size"]: r["row"]["mean_val_t1"] for r in rows}
    best = max(by_size, key=by_size.get)
    switch = best != table_size and by_size[best] >= by_size[table_size] + margin
    return {"size": best if switch else table_size, "best_val_size": best, "switch": switch,
            "gain": by_size[best] - by_size[table_size]}


def render(report: dict) -> str:
    rows, chosen = report["rows"], report["decision"]
    learners = list(rows[0]["row"]["results"])
    lines = ["# CUB-50 features: does a larger input image help?", "",
             "The plain cross-entropy backbone (`resnet_small`, 30 epochs, seed 0, bounding-box crops) trained at each "
             "image size. Validation T1: each learner's best T1 on the validation classes, from a second backbone "
             "trained without them (`--val-blind`), its hyper-parameters chosen there. Test: T1 and calibrated H on "
             "the 10 unseen classes, from the backbone trained on all 40 seen classes; reported, never used to "
             f"choose. Rule fixed before the runs: the tables of zsl_cub50.md ({report['table_size']} px) move to "
             f"another size only if its mean validation T1 is at least {report['margin']:g} point higher.", "",
             "| image size | mean val. T1 | " + " | ".join(f"{n} val. T1" for n in learners) + " | "
             + " | ".join(f"{n} test T1 / cal. H" for n in learners) + " | train (s, all seen classes) |",
             "| --- " * (3 + 2 * len(learners)) + "|"]
    for entry in rows:
        row = entry["row"]
        results = row["results"]
        lines.append(f"| {entry['size']} px | {row['mean_val_t1']:.1f} | "
                     + " | ".join(f"{results[n]['val_t1']:.1f}" for n in learners) + " | "
                     + " | ".join(f"{results[n]['t1']:.1f} / {results[n]['calibrated_h']:.1f}" for n in learners)
                     + f" | {row['features']['train_seconds']:.0f} |")
    verdict = (f"{chosen['size']} px replaces {report['table_size']} px" if chosen["switch"] else
               f"the tables stay at {report['table_size']} px")
    base = next(e["row"]["mean_val_t1"] for e in rows if e["size"] == report["table_size"])
    gains = ", ".join(f"{e['size']} px {e['row']['mean_val_t1'] - base:+.1f}" for e in rows
                      if e["size"] != report["table_size"])
    lines += ["", f"**Decision:** {verdict} (mean validation T1 against {report['table_size']} px: {gains}).", "",
              "## Provenance", "",
              f"- command: `{report['provenance']['command']}`", f"- commit: {report['provenance']['commit']}",
              f"- date: {report['provenance']['date']}", f"- machine: {report['provenance']['machine']}",
              *(f"- {entry['size']} px: `{entry['command']}` (train seconds from the run that built the feature "
                "cache)" for entry in rows), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[TABLE_SIZE, 96])
    parser.add_argument("--runs", default=str(ROOT / "runs" / "zsl_cub"), help="the zsl_cub.py runs (resumable)")
    parser.add_argument("--out", default=str(ROOT / "paper_results" / "zsl_cub50_image_size"))
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the existing .json")
    args = parser.parse_args(argv)
    from fewzero.atomic import write_text

    out = Path(args.out)
    if args.render_only:
        write_text(out.with_suffix(".md"), render(json.loads(out.with_suffix(".json").read_text())))
        return {}
    if TABLE_SIZE not in args.sizes:
        parser.error(f"--sizes must include {TABLE_SIZE}, the size the decision compares with")
    started = provenance()
    rows = [run_size(size, Path(args.runs)) for size in args.sizes]
    report = {"provenance": started, "table_size": TABLE_SIZE, "margin": MARGIN, "rows": rows,
              "decision": decision(rows)}
    write_text(out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    write_text(out.with_suffix(".md"), render(report))
    print(f"wrote {out}.json and {out}.md: {report['decision']}")
    return report


if __name__ == "__main__":
    main()
