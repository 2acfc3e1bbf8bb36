"""The argument parser of ``fewzero``, and which ``eval`` flags apply to which kind of method.

Every optional flag defaults to ``None`` so that a command can tell a flag the user gave from one left unset.
"""
from __future__ import annotations

import argparse

from fewzero.cli.launch import add_launch_flags
from fewzero.runlog import LOG_KINDS

# eval flags (argparse dest names) that only one kind of method takes; the rest apply to every kind
FEW_SHOT_EVAL_FLAGS = ("config", "split", "device", "checkpoint", "way", "shot", "query", "episodes", "subset",
                       "batch_norm", "train_if_missing")
ZERO_SHOT_EVAL_FLAGS = ("semantics",)
EVAL_FLAGS_BY_KIND = {"few-shot": FEW_SHOT_EVAL_FLAGS, "zero-shot": ZERO_SHOT_EVAL_FLAGS}

# the train flag that a resumed run may change (the config keys it may change are fewzero.run_folder.RESUMABLE_KEYS)
RESUMABLE_TRAIN_FLAGS = ("episodes",)


def flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, help="learner name (see `fewzero list`)")
    p.add_argument("--dataset", default=None, help="dataset name (default: omniglot, or cub50 for zero-shot)")
    p.add_argument("--data-root", default=None, help="data folder (default: $FEWZERO_DATA, else the user cache)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set lr=0.0005 --set learner.distance=cosine")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_few_shot(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="YAML config (default: configs/<method>_<dataset>.yaml)")
    p.add_argument("--split", default=None, help="dataset split scheme, e.g. vinyals or lake for Omniglot")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ...")


def _add_adapt(sub) -> None:
    adapt = sub.add_parser("adapt", help="unsupervised domain adaptation: train on a labelled source and an "
                                          "unlabelled target, select without target labels, report on the target")
    adapt.add_argument("--method", required=True, help="source_only, target_oracle, dan, dann or coral")
    adapt.add_argument("--source", required=True, help="mnist, uci_digits, mnistm, a folder with one subfolder per "
                                                       "class, or an .npz with x and y")
    adapt.add_argument("--target", required=True, help="the same choices as --source (its class names must be the "
                                                       "source's)")
    adapt.add_argument("--seed", type=int, default=0)
    adapt.add_argument("--out", default=None, help="result folder (default: runs/adapt_<method>_<source>_<target>)")
    adapt.add_argument("--overwrite", action="store_true", help="replace the results in --out")
    adapt.add_argument("--backbone", default="lenet", help="any registered backbone (default: lenet)")
    adapt.add_argument("--init", default=None, help="start from this checkpoint's backbone (fewzero pretrain/train)")
    adapt.add_argument("--steps", type=int, default=None, help="training steps per trade-off weight (default 1500)")
    adapt.add_argument("--batch-size", type=int, default=None, help="images per domain per step (default 32)")
    adapt.add_argument("--lr", type=float, default=None, help="initial SGD learning rate (default 0.01)")
    adapt.add_argument("--weights", default=None, help="comma-separated trade-off weights to choose from "
                                                      "(default: the method's grid)")
    adapt.add_argument("--checkpoints", type=int, default=None, help="candidates kept per weight, at evenly spaced "
                                                                     "steps (default 5)")
    adapt.add_argument("--image-size", type=int, default=None, help="common image side (default 28)")
    adapt.add_argument("--channels", type=int, default=None, choices=(1, 3),
                       help="common channels: 3 (default; grey images repeated) or 1 (colour made grey)")
    adapt.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="an argument of the method, e.g. --set layer=hidden --set domain_depth=2 (dann), "
                            "--set layers=[hidden] (dan)")
    adapt.add_argument("--select", default="dev", choices=("dev", "iwv", "source_val"),
                       help="how the weight and step are chosen without target labels (default: dev)")
    adapt.add_argument("--data-root", default=None, help="data folder (default: $FEWZERO_DATA, else the user cache)")
    adapt.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fewzero", description="Few-shot and zero-shot learning.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="show learners by kind, backbones, datasets (and whether their data is found), "
                                "configs and packaged models").add_argument(
        "--data-root", default=None, help="data folder to look for datasets in (default: $FEWZERO_DATA)")

    train = sub.add_parser("train", help="meta-train a few-shot learner")
    _add_common(train)
    _add_few_shot(train)
    train.add_argument("--out", default=None, help="run folder (default: runs/<method>_<dataset>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    train.add_argument("--log", default=None, choices=LOG_KINDS,
                       help="run log: metrics.jsonl (always written) or also TensorBoard event files")
    train.add_argument("--episodes", type=int, default=None)
    train.add_argument("--train-way", type=int, default=None)
    train.add_argument("--train-shot", type=int, default=None)
    train.add_argument("--train-query", type=int, default=None)
    train.add_argument("--lr", type=float, default=None)
    add_launch_flags(train)

    pre = sub.add_parser("pretrain", help="pretrain a backbone with supervised learning on the base classes, for "
                                          "the transfer learners (baseline, baselinepp, simpleshot, logreg, finetune)")
    pre.add_argument("--backbone", default=None, help="backbone name (default: the config's, conv4)")
    pre.add_argument("--dataset", default=None, help="dataset name (default: omniglot)")
    pre.add_argument("--config", default=None, help="YAML config (default: configs/pretrain_<dataset>.yaml)")
    pre.add_argument("--split", default=None, help="dataset split scheme, e.g. vinyals for Omniglot")
    pre.add_argument("--data-root", default=None, help="data folder (default: $FEWZERO_DATA, else the user cache)")
    pre.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ...")
    pre.add_argument("--seed", type=int, default=None)
    pre.add_argument("--epochs", type=int, default=None)
    pre.add_argument("--batch-size", type=int, default=None)
    pre.add_argument("--lr", type=float, default=None)
    pre.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override any config key, e.g. --set objective=cosine --set weight_decay=0.0005")
    pre.add_argument("--out", default=None, help="run folder (default: runs/pretrain_<backbone>_<dataset>)")
    pre.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    pre.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    pre.add_argument("--log", default=None, choices=LOG_KINDS,
                     help="run log: metrics.jsonl (always written) or also TensorBoard event files")
    pre.add_argument("--quiet", action="store_true", help="no progress bars")
    add_launch_flags(pre)

    feat = sub.add_parser("features", help="train a zero-shot dataset's feature backbone and cache its image "
                                            "features (fewzero eval does it on first use); --nproc N shares it")
    feat.add_argument("--dataset", default="cub50", help="zero-shot dataset with images (default: cub50)")
    feat.add_argument("--data-root", default=None, help="data folder (default: $FEWZERO_DATA, else the user cache)")
    feat.add_argument("--backbone", default=None, help="feature backbone: resnet_small (default) or conv4")
    feat.add_argument("--epochs", type=int, default=None)
    feat.add_argument("--batch-size", type=int, default=None, help="images per step, in all processes together")
    feat.add_argument("--seed", type=int, default=None)
    feat.add_argument("--quiet", action="store_true", help="no progress bars")
    add_launch_flags(feat)

    ev = sub.add_parser("eval", help="evaluate a learner: fixed test episodes (few-shot) or a zero-shot benchmark")
    _add_common(ev)
    ev.add_argument("--records", default=None, help="write the report (with per-episode records) to this JSON file")
    few = ev.add_argument_group("few-shot methods")
    _add_few_shot(few)
    few.add_argument("--checkpoint", default=None, help="weights to evaluate (default: the packaged or cached model)")
    few.add_argument("--train-if-missing", action="store_true", default=None,
                     help="train the default model into the cache when none is packaged or cached")
    few.add_argument("--way", type=int, default=None)
    few.add_argument("--shot", type=int, default=None)
    few.add_argument("--query", type=int, default=None)
    few.add_argument("--episodes", type=int, default=None, help="number of test episodes (default 1000)")
    few.add_argument("--subset", default=None, help="which subset to test on (default: test)")
    few.add_argument("--batch-norm", default=None, choices=("transductive", "inductive"),
                     help="MAML family: normalise queries with their own batch statistics (transductive, the "
                          "paper's choice and the default) or with the support set's (inductive)")
    zero = ev.add_argument_group("zero-shot methods")
    zero.add_argument("--semantics", default=None, choices=("attributes", "text", "attributes+text"),
                      help="class semantics (default: attributes)")

    tune = sub.add_parser("tune", help="search a learner's hyper-parameters on validation data (Optuna); "
                                        "resumable, shared by --jobs processes or, through --storage, machines")
    _add_common(tune)
    tune.add_argument("--config", default=None, help="YAML config the trials start from (few-shot: default "
                                                     "configs/<method>_<dataset>.yaml; zero-shot: its learner:)")
    tune.add_argument("--space", default=None, help="search space YAML (default: configs/spaces/<method>.yaml)")
    tune.add_argument("--trials", type=int, default=20, help="trials the study should hold (default 20); "
                                                            "rerunning the command runs only the missing ones")
    tune.add_argument("--sampler", default="tpe", choices=("tpe", "grid", "random", "cmaes"))
    tune.add_argument("--pruner", default="median", choices=("median", "hyperband", "none"),
                      help="stop trials whose intermediate validation scores are poor (default: median)")
    tune.add_argument("--study", default=None, help="study name (default: <method>_<dataset>)")
    tune.add_argument("--storage", default=None, help="journal file or database URL, e.g. sqlite:///study.db or "
                                                      "postgresql://user@host/db (default: <out>/study.journal)")
    tune.add_argument("--jobs", type=int, default=1, help="trials run at once, in separate processes")
    tune.add_argument("--out", default=None, help="study folder (default: runs/tune_<method>_<dataset>)")
    tune.add_argument("--metric", default=None, choices=("accuracy", "t1", "h"),
                      help="what a trial maximises: accuracy (few-shot), t1 (default) or h (zero-shot)")
    tune.add_argument("--semantics", default=None, choices=("attributes", "text", "attributes+text"),
                      help="zero-shot class semantics (default: attributes)")
    tune.add_argument("--split", default=None, help="few-shot dataset split scheme")
    tune.add_argument("--checkpoint", default=None, help="pretrained backbone of a transfer learner (default: the "
                                                         "packaged one)")
    tune.add_argument("--episodes", type=int, default=None, help="validation episodes per trial of a transfer "
                                                                "learner (default: the config's val_episodes)")

    _add_adapt(sub)
    plot = sub.add_parser("plot", help="draw the learning curves of one or more runs into a PNG")
    plot.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders holding metrics.jsonl")
    plot.add_argument("--out", default="curves.png", help="PNG to write (default: curves.png)")
    plot.add_argument("--metric", action="append", default=None,
                      help="record key to plot, repeatable (default: val_accuracy and train_loss)")
    return parser
