"""The ``fewzero`` command: ``list``, ``train``, ``eval``.

User mistakes (``FewzeroError``) print one line on stderr and exit with status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fewzero.errors import FewzeroError


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, help="learner name (see `fewzero list`)")
    p.add_argument("--dataset", default=None, help="dataset name (default: omniglot)")
    p.add_argument("--config", default=None, help="YAML config (default: configs/<method>_<dataset>.yaml)")
    p.add_argument("--data-root", default=None, help="data folder (default: $FEWZERO_DATA, else the user cache)")
    p.add_argument("--split", default=None, help="dataset split scheme, e.g. vinyals or lake for Omniglot")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ...")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set lr=0.0005 --set learner.distance=cosine")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fewzero", description="Few-shot and zero-shot learning.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="show learners, backbones, datasets and configs")

    train = sub.add_parser("train", help="meta-train a learner")
    _add_common(train)
    train.add_argument("--out", default=None, help="run folder (default: runs/<method>_<dataset>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--episodes", type=int, default=None)
    train.add_argument("--train-way", type=int, default=None)
    train.add_argument("--train-shot", type=int, default=None)
    train.add_argument("--train-query", type=int, default=None)
    train.add_argument("--lr", type=float, default=None)

    ev = sub.add_parser("eval", help="evaluate a learner on fixed test episodes")
    _add_common(ev)
    ev.add_argument("--checkpoint", default=None,
                    help="weights to evaluate (default: the packaged or cached checkpoint; trained if none)")
    ev.add_argument("--way", type=int, default=None)
    ev.add_argument("--shot", type=int, default=None)
    ev.add_argument("--query", type=int, default=None)
    ev.add_argument("--episodes", type=int, default=None, help="number of test episodes (default 1000)")
    ev.add_argument("--subset", default=None, help="which subset to test on (default: test)")
    ev.add_argument("--batch-norm", default=None, choices=("transductive", "inductive"),
                    help="MAML family: normalise queries with their own batch statistics (transductive, the paper's "
                         "choice and the default) or with the support set's (inductive)")
    ev.add_argument("--records", default=None, help="write the report with per-episode records to this JSON file")
    ev.add_argument("--semantics", default="attributes", choices=("attributes", "text"),
                    help="class semantics of a zero-shot method (default: attributes)")
    return parser


def _overrides(args: argparse.Namespace, mapping: dict[str, str]) -> dict:
    from fewzero.config import parse_override

    values = dict(parse_override(text) for text in args.set)
    for flag, key in mapping.items():
        if getattr(args, flag, None) is not None:
            values[key] = getattr(args, flag)
    return values


def cmd_list() -> None:
    from fewzero.config import CONFIG_DIR
    from fewzero.registry import BACKBONES, DATASETS, LEARNERS, ZERO_SHOT

    print("methods:   " + ", ".join(LEARNERS.available()))
    print("zero-shot: " + ", ".join(ZERO_SHOT.available()) + "  (fewzero eval --method eszsl --dataset cub50)")
    print("backbones: " + ", ".join(BACKBONES.available()))
    print("datasets:  " + ", ".join(DATASETS.available()))
    print("configs:   " + ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))))


def cmd_train(args: argparse.Namespace) -> None:
    from fewzero.config import load_config
    from fewzero.train import train

    mapping = {"split": "split", "seed": "seed", "device": "device", "episodes": "episodes", "lr": "lr",
               "train_way": "train_way", "train_shot": "train_shot", "train_query": "train_query"}
    config = load_config(args.method, args.dataset, args.config, _overrides(args, mapping))
    out = Path(args.out or f"runs/{config.method}_{config.dataset}")
    metrics = train(config, out, resume=args.resume, data_root=args.data_root, progress=not args.quiet)
    print(f"best validation accuracy {metrics['best_val_accuracy']:.2f} +- {metrics['best_val_ci95'] or 0:.2f} % "
          f"at episode {metrics['best_episode']} ({metrics['train_seconds']:.0f} s); checkpoint {out / 'best.pt'}")


def cmd_eval(args: argparse.Namespace) -> None:
    from fewzero.registry import ZERO_SHOT

    if args.method in ZERO_SHOT:
        from fewzero.zsl.cli import eval_from_args

        eval_from_args(args)
        return
    from fewzero.checkpoint import learner_from_checkpoint
    from fewzero.config import load_config
    from fewzero.evaluate import evaluate
    from fewzero.pretrained import default_checkpoint
    from fewzero.train import episode_sampler, load_split

    mapping = {"split": "split", "seed": "test_seed", "device": "device", "way": "test_way", "shot": "test_shot",
               "query": "test_query", "episodes": "test_episodes", "subset": "test_subset"}
    overrides = _overrides(args, mapping)
    config = load_config(args.method, args.dataset, args.config, overrides)
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint(
        config, data_root=args.data_root, progress=not args.quiet)
    # Learner settings given on the command line (--set learner.test_inner_steps=5) apply to the saved model.
    learner_overrides = {key.split(".", 1)[1]: value for key, value in overrides.items() if key.startswith("learner.")}
    learner, trained_config, _ = learner_from_checkpoint(checkpoint, learner_overrides)
    if trained_config.method != config.method:
        raise FewzeroError(f"{checkpoint} holds a {trained_config.method} model, not {config.method}: "
                           f"pass --method {trained_config.method} or another --checkpoint")
    # The model's own data settings (image size, split) apply; the episode settings come from the eval config.
    config.image_size, config.backbone = trained_config.image_size, trained_config.backbone
    if args.batch_norm:
        if not hasattr(learner, "batch_norm"):
            raise FewzeroError(f"--batch-norm applies to the MAML family, not {config.method}: drop it")
        learner.batch_norm = args.batch_norm
    dataset = load_split(config, config.test_subset, args.data_root, progress=not args.quiet)
    sampler = episode_sampler(dataset, config, config.test_episodes, config.test_seed)
    report = evaluate(learner.to(config.device), dataset, sampler, config.device, progress=not args.quiet)
    print(f"{config.method} on {config.dataset} ({config.split} {config.test_subset}) from {checkpoint}")
    if hasattr(learner, "describe_adaptation"):
        print(learner.describe_adaptation())
    print(report)
    if args.records:
        print(f"records written to {report.save(args.records)}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            cmd_list()
        elif args.command == "train":
            cmd_train(args)
        else:
            cmd_eval(args)
    except FewzeroError as exc:
        print(f"fewzero: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fewzero: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
