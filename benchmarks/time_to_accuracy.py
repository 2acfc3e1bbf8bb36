"""Validation accuracy against wall-clock minutes of meta-training, 20-way 1-shot Omniglot: MAML, MAML++, ProtoNet.

    python benchmarks/time_to_accuracy.py                    # trains what is missing (one thread each), then plots
    python benchmarks/time_to_accuracy.py --methods maml     # train one run only (e.g. beside another on a 2-core box)
    python benchmarks/time_to_accuracy.py --methods mamlpp --keep-recorded   # a new MAML++ run beside the recorded curves

Each curve is the validation history (200 fixed 20-way 1-shot validation episodes) that ``fewzero train`` records
in the run's metrics.json, with its own configs/<method>_omniglot_20way.yaml. MAML++'s run is the one
``benchmarks/omniglot.py --method mamlpp`` trains (runs/benchmark/mamlpp_20way), reused when it is there. Runs are
resumable (a killed run resumes when the script is started again). Writes paper_results/time_to_accuracy.{png,json,md}.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from omniglot_training import train_models  # noqa: E402
from provenance import ROOT, portable, provenance  # noqa: E402

from fewzero.atomic import write_text  # noqa: E402

METHODS = ("maml", "mamlpp", "protonet")
OUT = ROOT / "paper_results" / "time_to_accuracy"


def run_folder(method: str, runs: Path) -> Path:
    """MAML++'s 20-way run is the Omniglot benchmark's; the others train under ``runs``."""
    return ROOT / "runs" / "benchmark" / "mamlpp_20way" if method == "mamlpp" else runs / f"{method}_20way"


def curve(metrics: dict) -> list[tuple[float, float]]:
    """[(minutes, validation accuracy %)] of a run's history."""
    return [(h["seconds"] / 60, h["val_accuracy"]) for h in metrics["history"]]


def plot(curves: dict[str, list[tuple[float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, points in curves.items():
        ax.plot([m for m, _ in points], [a for _, a in points], marker=".", label=method)
    ax.set(xlabel="wall-clock minutes of meta-training (one CPU thread)",
           ylabel="validation accuracy, 20-way 1-shot (%)", title="Omniglot: time to accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def minutes_to(points: list[tuple[float, float]], accuracy: float) -> float | None:
    """The first validation time at which the curve reaches ``accuracy``, or None."""
    return next((m for m, a in points if a >= accuracy), None)


def render(report: dict) -> str:
    levels = report["levels"]
    lines = ["# Time to accuracy: Omniglot 20-way 1-shot", "",
             "Validation accuracy (200 fixed 20-way 1-shot validation episodes, Vinyals validation characters) "
             "against wall-clock minutes of meta-training, one torch thread per run. Written by "
             "`benchmarks/time_to_accuracy.py`.", "", "![time to accuracy](time_to_accuracy.png)", "",
             "| method | tasks | minutes | best validation | " + " | ".join(f"minutes to {x:g} %" for x in levels) + " |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in levels) + " |"]
    for method, run in report["runs"].items():
        reach = [run["minutes_to"][f"{x:g}"] for x in levels]
        lines.append(f"| {method} | {run['episodes_done']} | {run['train_seconds'] / 60:.1f} | "
                     f"{run['best_val_accuracy']:.2f} | " + " | ".join("—" if r is None else f"{r:.1f}" for r in reach)
                     + " |")
    lines += ["", "## Runs", ""]
    for method, run in report["runs"].items():
        prov = run.get("provenance", {})
        lines.append(f"- {method}: `{portable(run['command'])}`; commit {prov.get('commit', 'not recorded')}, started "
                     f"{prov.get('date', '?')} (training with {prov.get('threads') or 'torch default'} thread(s); the "
                     f"launching process: {prov.get('machine', '')}; load average {prov.get('load_average', '?')})")
    lines += ["", f"Plot written by `{report['provenance']['command']}` at commit {report['provenance']['commit']}, "
              f"{report['provenance']['date']}." + (f" Note: {report['note']}" if report.get("note") else ""), ""]
    return "\n".join(lines)


def with_recorded(new: dict[str, dict], recorded: dict[str, dict], levels: list[float]) -> dict[str, dict]:
    """The report's runs: the ``new`` ones, the ``recorded`` ones of other methods, and a recorded run that a new one
    replaces kept as ``"<method> (earlier run)"``; every curve's minutes-to-accuracy at ``levels``."""
    replaced = {m for m in new if m in recorded and recorded[m]["provenance"] != new[m]["provenance"]}
    runs = {}
    for method in dict.fromkeys([*recorded, *new]):
        if method in new:
            runs[method] = new[method]
            if method in replaced:
                runs[f"{method} (earlier run)"] = recorded[method]
        elif not (method.endswith(" (earlier run)") and method.removesuffix(" (earlier run)") in replaced):
            runs.setdefault(method, recorded[method])
    return {method: {**run, "minutes_to": {f"{x:g}": minutes_to([tuple(p) for p in run["curve"]], x) for x in levels}}
            for method, run in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--runs", default=str(ROOT / "runs" / "time_to_accuracy"))
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--levels", nargs="+", type=float, default=[80.0, 85.0, 90.0])
    parser.add_argument("--note", default="")
    parser.add_argument("--render-only", action="store_true", help="rewrite the md from the json and stop")
    parser.add_argument("--keep-recorded", action="store_true",
                        help="plot the methods not in --methods from the runs the json records (their folders may be "
                             "gone); a recorded run of a method in --methods stays beside it as '<method> (earlier "
                             "run)'")
    args = parser.parse_args()
    if args.render_only:
        write_text(OUT.with_suffix(".md"), render(json.loads(OUT.with_suffix(".json").read_text())))
        return
    runs = Path(args.runs)
    trained = {}
    for method in args.methods:
        config = f"configs/{method}_omniglot_20way.yaml"
        folder = run_folder(method, runs)
        if method == "mamlpp" and not (folder / "metrics.json").is_file():
            sys.exit(f"{folder} has no finished run: train it with `python benchmarks/omniglot.py --method mamlpp "
                     f"--models 20-way --threads 1`")
        # train_models names the folder <runs>/<method>_<model without dashes>: "20way" here
        trained[method] = train_models(method, {"20way": config}, folder.parent, args.data_root, False, 1, False)["20way"]
    recorded = json.loads(OUT.with_suffix(".json").read_text())["runs"] if args.keep_recorded else {}
    if set(args.methods) | set(recorded) < set(METHODS):
        print(f"trained {', '.join(args.methods)}; run without --methods (or with --keep-recorded) to plot all three")
        return
    runs_report = {method: {**{k: m[k] for k in ("command", "episodes_done", "train_seconds", "best_val_accuracy")},
                            "provenance": m.get("provenance", {}), "curve": curve(m),
                            "minutes_to": {f"{x:g}": minutes_to(curve(m), x) for x in args.levels}}
                   for method, m in trained.items()}
    runs_report = with_recorded(runs_report, recorded, args.levels)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    plot({method: run["curve"] for method, run in runs_report.items()}, OUT.with_suffix(".png"))
    report = {"levels": args.levels, "provenance": provenance(), "note": args.note, "runs": runs_report}
    write_text(OUT.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    write_text(OUT.with_suffix(".md"), render(report))
    print(f"wrote {OUT}.png, .json and .md")


if __name__ == "__main__":
    main()
