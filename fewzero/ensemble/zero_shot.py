"""The zero-shot ensemble: a ZeroShotLearner whose members are other zero-shot learners."""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from fewzero.ensemble.combine import Combiner
from fewzero.ensemble.fewshot import _unique
from fewzero.errors import FewzeroError
from fewzero.zsl.base import ZeroShotLearner


def standardise(scores: torch.Tensor) -> torch.Tensor:
    """Per-item z-score over the classes: (..., n, C) -> (..., n, C). Zero-shot learners score on unrelated
    scales (a distance, a bilinear form, a classifier's logit); this puts them on one before calibration."""
    centred = scores - scores.mean(-1, keepdim=True)
    return centred / centred.pow(2).mean(-1, keepdim=True).sqrt().clamp(min=1e-12)


class ZeroShotEnsemble(ZeroShotLearner):
    """Combines zero-shot learners; the combiner is fitted on the seen classes only.

    ``fit`` carves ``splits`` pseudo zero-shot problems out of the seen classes it is given: in each, a seeded
    ``holdout`` fraction of them (at least two) become pseudo-unseen, copies of the members are fitted on the others
    and score the held-out items among the held-out classes (with ``generalized``, also among all classes);
    temperatures and weights, or the stacker, are fitted on the standardised scores of every split. Then the members
    are refitted on every seen class. No test item or unseen class plays any part.

    Args:
        members: zero-shot learners (unfitted; they are fitted here).
        combine: ``mean_prob`` or ``stacking``.
        names: a name per member (default: the class names).
        holdout: fraction of the seen classes held out as pseudo-unseen for fitting the combiner.
        splits: how many such held-out splits (seeds ``seed``, ``seed + 1``, ...) the combiner is fitted on.
        generalized: also fit the combiner on the held-out items scored among all seen classes.
        seed: seeds the held-out classes (and the combiner's search).
        calibrate, step, stacking_c: see ``fewzero.ensemble.combine.Combiner``.
    """

    def __init__(self, members: Sequence[ZeroShotLearner] = (), *, combine: str = "mean_prob",
                 names: Sequence[str] = (), holdout: float = 0.2, splits: int = 3, generalized: bool = False,
                 seed: int = 0,
                 calibrate: bool = True, step: float = 0.1, stacking_c: float = 1.0):
        super().__init__(normalize_semantics=False)  # each member normalises the semantics its own way
        members = list(members)
        if not members:
            raise FewzeroError("an ensemble needs at least one member: list them under members")
        for i, member in enumerate(members):
            if not isinstance(member, ZeroShotLearner):
                raise FewzeroError(f"zero-shot ensemble member {i + 1} is a {type(member).__name__}, not a zero-shot "
                                   f"learner: use zero-shot members only (dap, eszsl, ale, ...)")
        if not 0.0 < holdout < 1.0:
            raise FewzeroError(f"holdout must be a fraction between 0 and 1, got {holdout}")
        if splits < 1:
            raise FewzeroError(f"splits must be at least 1, got {splits}")
        self.names = _unique(list(names) or [type(m).__name__.lower() for m in members])
        if len(self.names) != len(members):
            raise FewzeroError(f"{len(members)} members but {len(self.names)} names: give one name per member")
        self.members = nn.ModuleList(members)
        self.holdout, self.splits, self.generalized, self.seed = holdout, splits, generalized, seed
        self.combiner = Combiner(len(members), mode=combine, calibrate=calibrate, step=step, stacking_c=stacking_c,
                                 seed=seed)
        self.held_out_classes_: torch.Tensor | None = None  # (splits, n_held) labels of the held-out classes

    def _fit(self, x: torch.Tensor, y: torch.Tensor, semantics: torch.Tensor) -> None:
        present = y.unique().cpu()
        n_held = max(2, round(self.holdout * present.numel()))
        if present.numel() - n_held < 2:
            raise FewzeroError(f"a zero-shot ensemble needs at least 4 seen classes to fit its combiner on held-out "
                               f"ones, got {present.numel()}")
        scores, labels, held_out = [], [], []
        for split in range(self.splits):
            order = torch.randperm(present.numel(), generator=torch.Generator().manual_seed(self.seed + split))
            held, rest = present[order[:n_held]].sort().values, present[order[n_held:]].sort().values
            fit_rows, held_rows = torch.isin(y.cpu(), rest), torch.isin(y.cpu(), held)
            local = torch.full((semantics.shape[0],), -1, dtype=torch.long)
            local[rest], local[held] = torch.arange(rest.numel()), torch.arange(held.numel())
            probes = [copy.deepcopy(m).fit(x[fit_rows], local[y[fit_rows].cpu()].to(x.device), semantics[rest])
                      for m in self.members]
            held_x, held_y = x[held_rows], local[y[held_rows].cpu()]
            scores.append(self._standardised(probes, held_x, semantics[held])), labels.append(held_y)
            if self.generalized:  # the same items among every seen class (rest first, then held)
                scores.append(self._standardised(probes, held_x, semantics[torch.cat([rest, held])]))
                labels.append(held_y + rest.numel())
            held_out.append(held)
        self.combiner.fit(scores, labels)
        self.held_out_classes_ = torch.stack(held_out)
        for member in self.members:
            member.fit(x, y, semantics)

    @staticmethod
    @torch.no_grad()
    def _standardised(members, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        return standardise(torch.stack([m.eval()(x, semantics).float() for m in members]))

    def member_scores(self, x, semantics) -> torch.Tensor:
        """Every fitted member's standardised scores: (n, d), (C', a) -> (M, n, C')."""
        if self.n_features_in_ is None:
            raise FewzeroError("ZeroShotEnsemble is not fitted: call fit(x, y, semantics) first")
        return self._standardised(list(self.members), torch.as_tensor(x).float(), torch.as_tensor(semantics).float())

    def combine(self, member_scores: torch.Tensor) -> torch.Tensor:
        """(M, n, C') standardised member scores -> (n, C') ensemble scores."""
        return self.combiner(member_scores)

    def _score(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        return self.combine(self._standardised(list(self.members), x, semantics))

    def describe(self) -> str:
        """One line: the members and their weights (or stacking coefficients)."""
        return self.combiner.describe(self.names)
