"""``fewzero list``: every learner by kind, every adaptation method and backbone, dataset (and whether its data is found), config and
packaged model. Imports no learner: names come from the catalogue."""
from __future__ import annotations

import argparse

from fewzero.catalogue import DATASET_ENTRIES, KINDS
from fewzero.paths import config_dir, resolve_data_root
from fewzero.registry import ADAPTERS, BACKBONES


def cmd_list(args: argparse.Namespace) -> None:
    from fewzero.pretrained import PACKAGED

    for kind, registry in KINDS.items():
        print(f"{kind + ' methods:':20s}" + ", ".join(registry.available()))
    print(f"{'adaptation methods:':20s}" + ", ".join(ADAPTERS.available()))
    print(f"{'backbones:':20s}" + ", ".join(BACKBONES.available()))
    root = resolve_data_root(args.data_root)
    print(f"datasets (data root {root}):")
    for entry in DATASET_ENTRIES:
        state = "found" if entry.found(root) else "not found"
        print(f"  {entry.name:14s} {entry.kind:10s} {state:10s} {entry.note}")
    print(f"{'configs:':20s}" + ", ".join(sorted(p.stem for p in config_dir().glob("*.yaml"))))
    print(f"{'packaged models:':20s}" + ", ".join(sorted(p.stem for p in PACKAGED.glob("*.pt"))))
