"""The few-shot ensemble: a Learner whose members are other Learners."""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from fewzero.ensemble.combine import Combiner
from fewzero.episode import Episode
from fewzero.errors import FewzeroError
from fewzero.learners.base import Learner, check_support_labels
from fewzero.registry import LEARNERS

MEMBER_KEYS = ("method", "settings")
NOT_TRAINED = ("an ensemble is not trained: it combines trained members. Train each member (fewzero train, or "
               "fewzero pretrain for the transfer learners), then run fewzero eval --method ensemble --config FILE")


@LEARNERS.register("ensemble")
class Ensemble(Learner):
    """Fits every member on the support set and combines their query logits (``fewzero.ensemble.combine``).

    ``fit_combiner`` chooses the members' temperatures and weights (``mean_prob``) or fits the stacker
    (``stacking``) from validation scores; before it, ``mean_prob`` averages uncalibrated probabilities with equal
    weights, so an ensemble of one member gives that member's probabilities.

    Args:
        backbone: the network that members given as specs are built on (each gets a copy); unused otherwise.
        members: Learners, or specs ``{"method": name, "settings": {...}}`` built fresh on ``backbone`` (trained
            members come from ``fewzero.ensemble_setup``, which loads their checkpoints).
        combine: ``mean_prob`` or ``stacking``.
        names: a name per member (default: the spec's method, or the class name).
        calibrate, step, stacking_c, seed: see ``fewzero.ensemble.combine.Combiner``.
    """

    meta_trainable = False

    def __init__(self, backbone: nn.Module | None = None, *, members: Sequence = (), combine: str = "mean_prob",
                 names: Sequence[str] = (), calibrate: bool = True, step: float = 0.1,
                 stacking_c: float | None = None, seed: int = 0):
        super().__init__()
        built = [_member(spec, backbone, i) for i, spec in enumerate(members)]
        if not built:
            raise FewzeroError("an ensemble needs at least one member: list them under members")
        default = [spec["method"] if isinstance(spec, Mapping) else type(spec).__name__.lower() for spec in members]
        self.names = _unique(list(names) or default)
        if len(self.names) != len(built):
            raise FewzeroError(f"{len(built)} members but {len(self.names)} names: give one name per member")
        self.members = nn.ModuleList(built)
        self.combiner = Combiner(len(built), mode=combine, calibrate=calibrate, step=step, stacking_c=stacking_c,
                                 seed=seed)
        self.label_permutation_invariant = all(getattr(m, "label_permutation_invariant", True) for m in built)

    def fit(self, support_x: torch.Tensor, support_y: torch.Tensor) -> "Ensemble":
        check_support_labels(support_y, support_x)
        for member in self.members:
            member.fit(support_x, support_y)
        return self

    def member_logits(self, query_x: torch.Tensor) -> torch.Tensor:
        """Every member's logits: (n_query, *item_shape) -> (M, n_query, n_way)."""
        logits = [member(query_x) for member in self.members]
        return torch.stack([x.to(logits[0].dtype) for x in logits])

    def combine(self, member_logits: torch.Tensor) -> torch.Tensor:
        """(M, n_query, n_way) member logits -> (n_query, n_way) ensemble logits."""
        return self.combiner(member_logits)

    def forward(self, query_x: torch.Tensor) -> torch.Tensor:
        return self.combine(self.member_logits(query_x))

    def fit_combiner(self, member_logits: Sequence[torch.Tensor], labels: Sequence[torch.Tensor]) -> "Ensemble":
        """Choose temperatures and weights, or fit the stacker, on validation episodes: a list of (M, Q, W) member
        logits and of (Q,) labels. Never pass test episodes."""
        self.combiner.fit(member_logits, labels)
        return self

    def describe(self) -> str:
        """One line: the members and their weights (or stacking coefficients)."""
        return self.combiner.describe(self.names)

    def episode_loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        raise FewzeroError(NOT_TRAINED)


def _member(spec, backbone: nn.Module | None, index: int) -> Learner:
    if isinstance(spec, Learner):
        return spec
    if not isinstance(spec, Mapping) or "method" not in spec:
        raise FewzeroError(f"ensemble member {index + 1} must be a Learner or a mapping with a method, got {spec!r}")
    unknown = sorted(set(spec) - set(MEMBER_KEYS))
    if unknown:
        where = (" (members with checkpoints are loaded by fewzero eval --method ensemble)"
                 if "checkpoint" in unknown else "")
        raise FewzeroError(f"ensemble member {index + 1} has unknown key {unknown[0]!r}{where}: use "
                           f"{', '.join(MEMBER_KEYS)}")
    if spec["method"] == "ensemble":
        raise FewzeroError(f"ensemble member {index + 1} is itself an ensemble: list its members instead")
    if backbone is None:
        raise FewzeroError(f"ensemble member {index + 1} ({spec['method']}) is a spec: give a backbone to build it "
                           f"on, or pass a built Learner")
    settings = spec.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise FewzeroError(f"ensemble member {index + 1}: settings must be a mapping of learner options")
    member = LEARNERS.create(spec["method"], backbone=copy.deepcopy(backbone), **settings)
    if not isinstance(member, Learner):
        raise FewzeroError(f"ensemble member {index + 1} ({spec['method']}) is not a few-shot learner")
    return member


def _unique(names: list[str]) -> list[str]:
    """Names made distinct by a suffix: protonet, protonet_2, ..."""
    seen: dict[str, int] = {}
    out = []
    for name in map(str, names):
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out
