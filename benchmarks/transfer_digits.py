"""Feature extraction vs fine-tuning on a new domain: the Omniglot-pretrained Conv-4 on handwritten digits.

    python benchmarks/transfer_digits.py                 # the full study (see the notes of the table for its cost)
    python benchmarks/transfer_digits.py --quick         # smoke test: tiny sizes, seconds, into a temp folder

Targets: ``uci_digits`` and ``mnist`` (``fewzero.data.digits``). For n labelled training images per class (drawn
from the ``train`` subset with seeds 0-4, nested in n), each setting fits a 10-way classifier with ``FineTune``
(via ``transfer_digits_learners.Transfer``, which computes the same function faster): ``scratch`` (a randomly
initialised Conv-4, every block trained), ``linear probe`` (all 4 blocks frozen), ``fine-tune k=3..0`` (k blocks
frozen, one learning rate) and the same with discriminative learning rates (each block ``--lr-decay`` times the
rate of the block above). Learning rate and steps are chosen per (setting, n) on the ``val`` subset with the seed-0
labelled subset; the ``test`` subset gives the reported numbers only. Every accuracy, precision, recall, F1 and
confusion matrix is computed by ``fewzero.evaluate.evaluate`` on one fixed episode (support = the labelled images,
query = the evaluation subset). Each finished result is cached under ``--cache``: a killed run continues.
Writes ``<out>/transfer_digits.{md,json,png}`` and ``<out>/transfer_digits_confusion.png``.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from fewzero.atomic import write_json, write_text
from fewzero.tune.search import search, space_from_grid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import ROOT, provenance, relative  # noqa: E402
from transfer_digits_learners import Transfer, episode_data, fresh_copy, labelled_indices  # noqa: E402
from transfer_digits_report import plot_confusions, plot_curves, render, summarise  # noqa: E402

DEFAULT_CHECKPOINT = ROOT / "fewzero" / "pretrained" / "pretrain_conv4_omniglot.pt"
TARGETS = ("uci_digits", "mnist")


def setting_table(decay: float) -> dict[str, dict]:
    """Setting name -> how its learner is built (scratch or pretrained, frozen blocks, lr decay)."""
    table = {"scratch": {"scratch": True, "freeze": 0, "lr_decay": None},
             "linear probe": {"scratch": False, "freeze": 4, "lr_decay": None}}
    for k in (3, 2, 1, 0):
        table[f"fine-tune k={k}"] = {"scratch": False, "freeze": k, "lr_decay": None}
    for k in (3, 2, 1, 0):
        table[f"fine-tune k={k} disc."] = {"scratch": False, "freeze": k, "lr_decay": decay}
    return table


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="backbone from fewzero pretrain")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 5, 20, 100], help="labelled images per class")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="labelled-subset seeds")
    parser.add_argument("--settings", nargs="+", default=None, help="a subset of the settings (default: all)")
    parser.add_argument("--lrs", nargs="+", type=float, default=[0.01, 0.1], help="learning-rate grid")
    parser.add_argument("--steps", nargs="+", type=int, default=[50, 200], help="steps grid")
    parser.add_argument("--lr-decay", type=float, default=0.3, help="discriminative learning-rate factor per block")
    parser.add_argument("--weight-decay", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=50, help="support items per step when there are more")
    parser.add_argument("--eval-per-class", type=int, default=None,
                        help="val/test images per class (default: all, 34 for uci_digits, 100 for mnist)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split")
    parser.add_argument("--jobs", type=int, default=2, help="processes, one target domain each (--quick: 1)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per process (0: the cores shared among the jobs)")
    parser.add_argument("--out", default=None, help="output folder (default: paper_results/; --quick: a temp folder)")
    parser.add_argument("--cache", default=None, help="finished results (default: runs/transfer_digits)")
    parser.add_argument("--note", default="", help="conditions worth recording (e.g. other jobs on the machine)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: n=1, seed 0, linear probe and fine-tune k=3, 3 steps, 5 images per class")
    args = parser.parse_args(argv)
    if args.quick:
        args.out = args.out or tempfile.mkdtemp(prefix="transfer_digits_quick_")
        args.shots, args.seeds, args.steps, args.jobs = [1], [0], [3], 1
        args.settings = args.settings or ["linear probe", "fine-tune k=3"]
        args.eval_per_class = args.eval_per_class or 5
        args.cache = args.cache or str(Path(args.out) / "transfer_digits_quick_cache")
    args.out = args.out or str(ROOT / "paper_results")
    args.cache = args.cache or str(ROOT / "runs" / "transfer_digits")
    known = setting_table(args.lr_decay)
    unknown = [s for s in args.settings or [] if s not in known]
    if unknown:
        parser.error(f"unknown setting(s) {unknown}: choose among {', '.join(map(repr, known))}")
    args.settings = args.settings or list(known)
    return args


def load_backbone(path: str) -> torch.nn.Module:
    """The pretrained Conv-4 of a ``fewzero pretrain`` checkpoint."""
    from fewzero.checkpoint import learner_from_checkpoint

    if not Path(path).is_file():
        sys.exit(f"no pretrained backbone at {path}: pass --checkpoint runs/pretrain_conv4_omniglot/best.pt "
                 f"(written by fewzero pretrain) or ship it as {DEFAULT_CHECKPOINT.relative_to(ROOT)}")
    learner, _, _ = learner_from_checkpoint(path, method="finetune")
    return learner.backbone.eval()


def file_sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def slug(text: str) -> str:
    return text.replace(" ", "_").replace("=", "").replace(".", "")


class Study:
    """Runs (or reads back from the cache) every fit of one target domain."""

    def __init__(self, args: argparse.Namespace, backbone: torch.nn.Module, cache: Path):
        self.args, self.backbone, self.cache = args, backbone, cache
        self.table = setting_table(args.lr_decay)
        self.computed = self.reused = 0
        self.fit_seconds = 0.0  # fitting + evaluating time of every fit, computed now or by the run that cached it

    def learner(self, setting: str, hp: dict, seed: int) -> Transfer:
        spec = self.table[setting]
        backbone = fresh_copy(self.backbone, seed) if spec["scratch"] else self.backbone
        return Transfer(backbone, freeze=spec["freeze"], lr_decay=spec["lr_decay"], lr=hp["lr"], steps=hp["steps"],
                        weight_decay=self.args.weight_decay, batch_size=self.args.batch_size, seed=seed)

    def result(self, key: Path, learner_fn, data) -> tuple[dict, Transfer | None]:
        """The cached record at ``key``, or evaluate ``learner_fn()`` on ``data`` (dataset, sampler) and cache it."""
        from fewzero.evaluate import evaluate

        if key.is_file():
            self.reused += 1
            record = json.loads(key.read_text())
            self.fit_seconds += record["seconds"]
            return record, None
        learner = learner_fn()
        report = evaluate(learner, *data, progress=False)
        record = {"accuracy": report.accuracy, "precision": report.precision, "recall": report.recall,
                  "f1": report.f1, "confusion": report.confusion, "seconds": round(report.seconds, 2),
                  "n_query": report.n_query, "n_shot": report.n_shot}
        write_json(key, record)
        self.computed += 1
        self.fit_seconds += record["seconds"]
        return record, learner

    def run(self, domain: str) -> dict:
        from fewzero.data.digits import digits

        a = self.args
        train, val, test = (digits(domain, subset=s, seed=a.split_seed) for s in ("train", "val", "test"))
        out = {"sizes": {"train": len(train), "val": len(val), "test": len(test)}, "settings": {}}
        for n, setting in itertools.product(a.shots, a.settings):
            started = time.perf_counter()
            folder = self.cache / domain / slug(setting)
            supports = {seed: labelled_indices(train.labels, n, seed) for seed in a.seeds}
            trials, fitted = [], {}
            val_data = episode_data(train, supports[a.seeds[0]], val, a.eval_per_class)

            def objective(hp: dict) -> float:
                key = folder / f"n{n}_seed{a.seeds[0]}_lr{hp['lr']:g}_steps{hp['steps']}_val.json"
                record, learner = self.result(key, lambda: self.learner(setting, hp, a.seeds[0]), val_data)
                trials.append({**hp, "val_accuracy": record["accuracy"]})
                fitted[(hp["lr"], hp["steps"])] = learner
                return record["accuracy"]

            # fewzero.tune's grid search, fewest steps and smallest lr first: ties keep the cheaper point
            search(space_from_grid({"steps": sorted(a.steps), "lr": sorted(a.lrs)}), objective)
            best = max(trials, key=lambda t: t["val_accuracy"])
            hp = {"lr": best["lr"], "steps": best["steps"]}
            tests = []
            for seed in a.seeds:
                key = folder / f"n{n}_seed{seed}_lr{hp['lr']:g}_steps{hp['steps']}_test.json"
                reuse = fitted.get((hp["lr"], hp["steps"])) if seed == a.seeds[0] else None
                record, _ = self.result(key, lambda: reuse if reuse is not None else self.learner(setting, hp, seed),
                                        episode_data(train, supports[seed], test, a.eval_per_class))
                tests.append({"seed": seed, **record})
            accuracies = [t["accuracy"] for t in tests]
            out["settings"].setdefault(setting, {})[str(n)] = {
                "hp": hp, "val_accuracy": best["val_accuracy"], "val_trials": trials, "test": tests,
                "mean": float(np.mean(accuracies)), "std": float(np.std(accuracies, ddof=1)) if len(tests) > 1 else 0.0,
                "seconds": round(time.perf_counter() - started, 1)}
            print(f"{domain:>10} n={n:<3} {setting:<20} test {np.mean(accuracies):6.2f} +- "
                  f"{out['settings'][setting][str(n)]['std']:.2f} % ({hp}, val {best['val_accuracy']:.1f} %, "
                  f"{out['settings'][setting][str(n)]['seconds']:.0f} s)", flush=True)
        return out


def run_domain(args: argparse.Namespace, domain: str) -> tuple[dict, int, int, float]:
    """(the domain's results, fits computed, fits read from the cache, seconds of all its fits); runs in a worker
    process when --jobs > 1."""
    torch.set_num_threads(args.threads)
    study = Study(args, load_backbone(args.checkpoint), Path(args.cache_dir))
    return study.run(domain), study.computed, study.reused, study.fit_seconds


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    jobs = max(1, min(args.jobs, len(args.targets)))
    if not args.threads:
        args.threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else torch.get_num_threads()
    started, clock = provenance(), time.perf_counter()
    load_backbone(args.checkpoint)  # a missing or bad checkpoint fails here, before any work
    config = {"checkpoint": relative(args.checkpoint),
              "checkpoint_sha256": file_sha256(args.checkpoint),
              "targets": args.targets, "shots": args.shots, "seeds": args.seeds, "settings": args.settings,
              "grid": {"lr": sorted(args.lrs), "steps": sorted(args.steps)}, "lr_decay": args.lr_decay,
              "weight_decay": args.weight_decay, "batch_size": args.batch_size, "momentum": 0.9,
              "eval_per_class": args.eval_per_class, "split_seed": args.split_seed, "image_size": 28,
              "quick": args.quick, "jobs": jobs, "threads": args.threads}
    fixed = {k: config[k] for k in ("checkpoint_sha256", "lr_decay", "weight_decay", "batch_size", "eval_per_class",
                                    "split_seed", "image_size")}
    args.cache_dir = str(Path(args.cache) / hashlib.sha1(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:12])
    if jobs > 1:  # one process per target domain (spawned: no OpenMP state inherited from this process)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {domain: pool.submit(run_domain, args, domain) for domain in args.targets}
            runs = {domain: future.result() for domain, future in futures.items()}
    else:
        runs = {domain: run_domain(args, domain) for domain in args.targets}
    domains = {domain: run[0] for domain, run in runs.items()}
    report = {"benchmark": "transfer_digits", "config": config, "cache": args.cache_dir, "domains": domains,
              "summary": summarise(domains),
              "fits": {"computed": sum(r[1] for r in runs.values()),
                       "read_from_cache": sum(r[2] for r in runs.values()),
                       "fit_seconds": round(sum(r[3] for r in runs.values()), 1)},
              "seconds": round(time.perf_counter() - clock, 1),
              "provenance": {**started, "finished": provenance()["date"]}, "note": args.note}
    out = Path(args.out)
    plot_curves(report, out / "transfer_digits.png")
    plot_confusions(report, out / "transfer_digits_confusion.png")
    write_json(out / "transfer_digits.json", report)
    write_text(out / "transfer_digits.md", render(report))
    print(f"wrote {out / 'transfer_digits.md'} (.json, .png, _confusion.png) in {report['seconds']:.0f} s")
    return report


if __name__ == "__main__":
    main()
