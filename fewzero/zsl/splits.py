"""The validation split on which the evaluator tunes calibrated stacking (never touching test items)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fewzero.errors import FewzeroError
from fewzero.data.zero_shot import ZeroShotData


@dataclass
class CalibrationSplit:
    """A pseudo zero-shot problem carved out of the seen-class training items.

    Attributes:
        fit_idx: rows of ``train_x`` to fit on (pseudo-seen classes only, minus the held-out items).
        eval_idx: rows of ``train_x`` to score: the held-out pseudo-seen items and every pseudo-unseen item.
        seen_classes: pseudo-seen class ids (seen classes that are not validation classes).
        unseen_classes: pseudo-unseen class ids (the validation classes).
    """

    fit_idx: torch.Tensor
    eval_idx: torch.Tensor
    seen_classes: torch.Tensor
    unseen_classes: torch.Tensor


def calibration_split(data: ZeroShotData, seed: int = 0, holdout: float = 0.2) -> CalibrationSplit:
    """Split the training items into a pseudo generalized zero-shot problem.

    Pseudo-unseen classes are ``data.val_classes`` when given, else a seeded random fifth of the seen classes.
    From each other seen class a seeded ``holdout`` fraction of its items (at least one, when it has two or more)
    is held out as pseudo-seen test items.
    """
    generator = torch.Generator().manual_seed(seed)
    seen = data.seen_classes.long().cpu()
    if data.val_classes is not None and data.val_classes.numel():
        val = data.val_classes.long().cpu().unique()
        if not set(val.tolist()) <= set(seen.tolist()):
            raise FewzeroError("val_classes must be a subset of seen_classes: fix the split")
    else:
        count = max(1, round(0.2 * seen.numel()))
        val = seen[torch.randperm(seen.numel(), generator=generator)[:count]].sort().values
    rest = seen[~torch.isin(seen, val)]
    if rest.numel() < 2:
        raise FewzeroError(f"only {rest.numel()} seen classes remain beside the {val.numel()} validation classes: "
                           f"calibration needs at least two; use fewer val_classes")
    labels = data.train_y.long().cpu()
    fit, held = [], []
    for cls in rest.tolist():
        items = (labels == cls).nonzero().flatten()
        items = items[torch.randperm(items.numel(), generator=generator)]
        n_held = max(1, int(holdout * items.numel())) if items.numel() >= 2 else 0
        held.append(items[:n_held]), fit.append(items[n_held:])
    val_items = torch.isin(labels, val).nonzero().flatten()
    if val_items.numel() == 0:
        raise FewzeroError("no training items of the validation classes: calibration needs some")
    return CalibrationSplit(fit_idx=torch.cat(fit).sort().values,
                            eval_idx=torch.cat(held + [val_items]).sort().values,
                            seen_classes=rest, unseen_classes=val)


def validation_problem(data: ZeroShotData, seed: int = 0) -> ZeroShotData:
    """A zero-shot problem made of training items only, on which hyper-parameters are chosen: the validation
    classes play the unseen classes (``calibration_split``: the other seen classes are fitted on, a held-out fifth of
    their items are the seen test items, the validation classes' items the unseen test items). Classes are
    renumbered: pseudo-seen first, then pseudo-unseen. No test item of ``data`` is read."""
    split = calibration_split(data, seed=seed)
    classes = torch.cat([split.seen_classes, split.unseen_classes]).long()
    table = torch.full((len(data.class_names),), -1, dtype=torch.long)
    table[classes] = torch.arange(classes.numel())
    labels = data.train_y.long().cpu()
    held = split.eval_idx[torch.isin(labels[split.eval_idx], split.seen_classes)]
    val = split.eval_idx[torch.isin(labels[split.eval_idx], split.unseen_classes)]
    n_seen = split.seen_classes.numel()
    return ZeroShotData(
        semantics=data.semantics[classes], class_names=[data.class_names[c] for c in classes.tolist()],
        seen_classes=torch.arange(n_seen), unseen_classes=torch.arange(n_seen, classes.numel()),
        train_x=data.train_x[split.fit_idx], train_y=table[labels[split.fit_idx]],
        test_seen_x=data.train_x[held], test_seen_y=table[labels[held]],
        test_unseen_x=data.train_x[val], test_unseen_y=table[labels[val]], info={"validation": True})
