"""``fewzero features``: train a zero-shot dataset's feature backbone and cache its image features ahead of
``fewzero eval`` (which otherwise does it on first use), in one process or, with ``--nproc``, in many."""
from __future__ import annotations

import argparse

from fewzero.errors import FewzeroError


def cmd_features(args: argparse.Namespace, argv: list[str] | None = None) -> int | None:
    from fewzero.cli.launch import launch, wants_launch

    if args.dataset != "cub50":
        raise FewzeroError(f"{args.dataset} has no feature backbone to train (xlsa17 datasets ship their "
                           f"features): use --dataset cub50")
    if args.batch_size is not None and args.batch_size < 1:
        raise FewzeroError(f"--batch-size must be >= 1, got {args.batch_size}")
    if wants_launch(args):
        return launch(args, argv or [])
    from fewzero.distributed import process_group, rank_and_world
    from fewzero.zsl.loaders import load_zero_shot

    with process_group("cpu"):
        rank, world = rank_and_world()
        options = {"backbone": args.backbone, "epochs": args.epochs, "seed": args.seed, "batch_size": args.batch_size}
        data = load_zero_shot(args.dataset, "attributes", args.data_root, progress=not args.quiet and rank == 0,
                              **options)
    facts = data.info["features"]
    if rank == 0:
        how = ("read from the cache" if facts["cached"] else
               f"trained in {facts['train_seconds']:.0f} s by {facts.get('processes', 1)} process(es)")
        print(f"{args.dataset}: {len(data.train_y) + len(data.test_seen_y) + len(data.test_unseen_y)} images, "
              f"{facts['feature_dim']}-dim features of {facts['backbone']} ({facts['epochs']} epochs), {how}; "
              f"`fewzero eval --dataset {args.dataset}` uses them")
    return None
