"""Reproduce the Omniglot few-shot tables (Vinyals split, 1000 test episodes, 15 queries per class).

    python benchmarks/omniglot.py --method protonet          # 2 models (1-shot, 5-shot), ~1 hour on 2 CPUs
    python benchmarks/omniglot.py --method maml               # 2 models (5-way, 20-way), up to 1 hour each
    python benchmarks/omniglot.py --method fomaml --models 5-way
    python benchmarks/omniglot.py --method anil --render-only # rewrite the md from the json
    python benchmarks/omniglot.py --method maml --packaged    # re-evaluate the models fewzero/pretrained ships

Each model is trained with ``fewzero train`` and a config in ``configs/``, then evaluated by the shared evaluator.
ProtoNet trains a 1-shot and a 5-shot model (each serves both way settings, as in Snell et al. 2017); MAML, FOMAML
and ANIL train a 5-way and a 20-way model on 1-shot tasks (each serves both shot settings: the head is tied to the
number of ways). MAML, FOMAML and ANIL share one table, ``paper_results/omniglot_maml.{json,md}``; ProtoNet has
``omniglot_protonet``. Results are merged per setting, so the models of a table may be trained in separate runs of
this script; each setting records the training run, commit and date behind it. Gradient-based learners are reported
at their training inner step size (Finn et al.'s protocol) and at one chosen per setting on validation episodes.

Runs already finished under ``--runs`` are reused; a killed run is resumed. ``--threads`` sets torch's threads per
training process and for the evaluation: with ``--parallel``, the models of one method train side by side, one
process each.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from fewzero.atomic import write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from omniglot_evaluation import evaluate_models  # noqa: E402
from omniglot_settings import PUBLISHED, models_of, packaged_checkpoint, run_dir, table_of  # noqa: E402
from omniglot_table import locked, merge, recorded_training, render  # noqa: E402
from omniglot_training import train_models  # noqa: E402
from provenance import ROOT, provenance  # noqa: E402


def _exit_on_sigterm(signum, frame) -> None:
    sys.exit(f"omniglot.py: stopped by signal {signum}")  # unwinds through train_models, which stops the training


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="protonet", choices=sorted(PUBLISHED))
    parser.add_argument("--models", default=None, help="comma-separated subset of the method's models, e.g. 5-way")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--runs", default="runs/benchmark", help="where the trained models go")
    parser.add_argument("--episodes", type=int, default=1000, help="test episodes per setting")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per training process and for the evaluation")
    parser.add_argument("--parallel", action="store_true", help="train the models side by side")
    parser.add_argument("--note", default="", help="conditions worth recording (e.g. other jobs on the machine)")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny training, results not written")
    parser.add_argument("--render-only", action="store_true", help="rewrite the md from the json and stop")
    parser.add_argument("--packaged", action="store_true",
                        help="evaluate the checkpoints shipped in fewzero/pretrained (trained by an earlier run of this "
                             "script, whose training record the json keeps) instead of training")
    args = parser.parse_args()

    base = ROOT / "paper_results" / f"omniglot_{table_of(args.method)}"
    if args.render_only:
        write_text(base.with_suffix(".md"), render(json.loads(base.with_suffix(".json").read_text())))
        print(f"wrote {base}.md")
        return
    models = models_of(args.method)
    if args.models:
        unknown = set(args.models.split(",")) - set(models)
        if unknown:
            sys.exit(f"unknown model(s) {', '.join(sorted(unknown))} for {args.method}: choose from {', '.join(models)}")
        models = {m: c for m, c in models.items() if m in args.models.split(",")}
    if args.threads:  # the evaluation runs in this process (more threads than free cores stall on their barriers)
        import torch

        torch.set_num_threads(args.threads)
    started = provenance()
    runs = Path(args.runs) if not args.quick else Path(args.runs) / "quick"
    if args.packaged:
        trained = recorded_training(base.with_suffix(".json"), args.method, models)
        checkpoints = {model: packaged_checkpoint(args.method, model) for model in models}
    else:
        trained = train_models(args.method, models, runs, args.data_root, args.quick, args.threads, args.parallel)
        checkpoints = {model: run_dir(runs, args.method, model) / "best.pt" for model in models}
    evaluated = evaluate_models(args.method, checkpoints, args.data_root, 20 if args.quick else args.episodes,
                                10 if args.quick else 200)
    if args.quick:
        print(json.dumps({k: v for k, v in evaluated.items() if k != "results"}, indent=1))
        return
    with locked(runs / f".omniglot_{table_of(args.method)}.lock"):
        path = base.with_suffix(".json")
        table = json.loads(path.read_text()) if path.is_file() else {}
        table.update({"benchmark": "omniglot", "split": "vinyals", "test_episodes": args.episodes,
                      "queries_per_class": 15})
        merge(table, args.method, trained, evaluated, started, args.note)
        write_text(path, json.dumps(table, indent=1) + "\n")
        write_text(base.with_suffix(".md"), render(table))
    print(f"wrote {base}.json and {base}.md")


if __name__ == "__main__":
    main()
