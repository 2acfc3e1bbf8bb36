"""paper_results/domain_adaptation_dev.md from the runs of benchmarks/domain_adaptation_dev.py: the development
accuracy of every variant and, by the rule fixed before the runs, which variant each method ships."""
from __future__ import annotations

import json
import statistics
from pathlib import Path


def decide(means: dict[str, float], variants: dict, margin: float) -> dict[str, dict]:
    """Per method: its default (the first variant of that method), the best variant, and the one that ships (the
    best if it beats the default by ``margin`` points or more, else the default)."""
    out: dict[str, dict] = {}
    for name, (method, _) in variants.items():
        if method == "source_only" or name not in means:
            continue
        entry = out.setdefault(method, {"default": name, "best": name})
        if means[name] > means[entry["best"]]:
            entry["best"] = name
    for entry in out.values():
        gain = means[entry["best"]] - means[entry["default"]]
        entry["gain"] = gain
        entry["ships"] = entry["best"] if gain >= margin else entry["default"]
    return out


def write_report(runs: Path, variants: dict, pairs: tuple, seeds: list, margin: float, out: Path) -> Path:
    from fewzero.atomic import write_text

    records = {}
    for path in sorted(runs.glob("*_seed*.json")):
        r = json.loads(path.read_text())
        if r["seed"] in seeds:
            records[(r["variant"], r["pair"], r["seed"])] = r
    cells = {(v, p): [records[(v, p, s)]["accuracy"] for s in seeds if (v, p, s) in records]
             for v in variants for p in pairs}
    complete = [v for v in variants if all(len(cells[(v, p)]) == len(seeds) for p in pairs)]
    means = {v: statistics.fmean(a for p in pairs for a in cells[(v, p)]) for v in complete}
    lines = ["# Domain adaptation: design choices made on development pairs", "",
             "Written by `python benchmarks/domain_adaptation_dev.py` (see its docstring for the pairs and the rule). "
             "Accuracy (%) on the development target's test part of the model the benchmark's protocol selects "
             "(trade-off weight and step by DEV, without target labels), per seed. No image of a benchmark test set "
             "is read: both pairs are built from the MNIST images of the benchmark's train and val subsets.", "",
             f"Rule, fixed before the runs: per method, the variant with the highest mean over both pairs and seeds "
             f"{list(seeds)} ships if it beats the default by at least {margin:g} points. The default is the "
             f"first variant of each method: the library's default when the runs were made (since replaced by "
             f"what this table decided; the variants' arguments are spelt out, so a rerun repeats the same runs).",
             "",
             "| variant | method arguments | " + " | ".join(f"{p} (seeds {', '.join(map(str, seeds))})"
                                                        for p in pairs) + " | mean | A-distance after (mean) |",
             "| --- | --- | " + " | ".join("---:" for _ in pairs) + " | ---: | ---: |"]
    for v, (method, args) in variants.items():
        shown = [", ".join(f"{a:.2f}" for a in cells[(v, p)]) or "–" for p in pairs]
        distances = [r["a_distance"]["after"] for (rv, _, _), r in records.items() if rv == v]
        mean = f"{means[v]:.2f}" if v in means else "–"
        distance = f"{statistics.fmean(distances):.2f}" if distances else "–"
        lines.append(f"| {v} | `{json.dumps(args)}` | " + " | ".join(shown) + f" | {mean} | {distance} |")
    lines += ["", "## Decision", ""]
    if len(complete) < len(variants):
        lines.append(f"Not all runs are finished ({len(records)} of {len(variants) * len(pairs) * len(seeds)}): "
                     f"no decision yet.")
    else:
        for method, d in decide(means, variants, margin).items():
            verdict = (f"**{d['ships']}** ships ({d['gain']:+.2f} over the default {d['default']})"
                       if d["ships"] != d["default"] else
                       f"the default **{d['default']}** stays (best variant {d['best']}, {d['gain']:+.2f})")
            differences = {p: statistics.fmean(cells[(d["best"], p)]) - statistics.fmean(cells[(d["default"], p)])
                           for p in pairs}
            per_pair = ", ".join(f"{p} {difference:+.2f}" for p, difference in differences.items())
            lines.append(f"- {method}: {verdict}; {d['best']} vs {d['default']} per pair: {per_pair}")
    provenance = next(iter(records.values()))["provenance"] if records else {}
    seconds = sum(r["seconds"] for r in records.values())
    lines += ["", "## Provenance", "",
              f"- {len(records)} runs, {seconds / 60:.0f} CPU-minutes (one torch thread each); first record: commit "
              f"{provenance.get('commit', '?')}, {provenance.get('date', '?')}, {provenance.get('machine', '?')}",
              "- commits of the runs: " + ", ".join(sorted({r["provenance"].get("commit", "?")
                                                           for r in records.values()}))]
    write_text(out, "\n".join(lines) + "\n")
    return out
