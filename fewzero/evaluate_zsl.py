"""The zero-shot evaluator: the only place a zero-shot number is computed.

Accuracies are per-class mean top-1 in percent (every class counts equally, as in Xian et al.'s proposed split):

- T1: unseen test items, searching among the unseen classes only.
- u / s: unseen / seen test items, searching among all (seen + unseen) classes; H = 2us / (u + s).
- calibrated stacking (Chao et al., ECCV 2016): ``gamma`` is subtracted from every seen-class score before the
  argmax. Ties between the best seen and best unseen score go to the unseen class.
- the seen-unseen accuracy curve sweeps gamma over every value at which a prediction changes; AUSUC is the area
  under s against u with both as fractions (0..1), as Chao et al. report it.

Score matrices are (n, C) over the classes of the semantics matrix: column c scores class c.
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from fewzero.atomic import atomic_path
from fewzero.atomic import write_json
from fewzero.errors import FewzeroError
from fewzero.zsl.base import ZeroShotLearner
from fewzero.data.zero_shot import ZeroShotData
from fewzero.zsl.splits import calibration_split

MAX_CURVE_POINTS = 500


def per_class_accuracy(pred, truth, classes) -> float:
    """Mean over ``classes`` of each class's top-1 accuracy (%); classes with no items in ``truth`` are skipped."""
    pred, truth = torch.as_tensor(pred).long().cpu(), torch.as_tensor(truth).long().cpu()
    accuracies = [float((pred[truth == c] == c).double().mean()) for c in torch.as_tensor(classes).tolist()
                  if bool((truth == c).any())]
    if not accuracies:
        raise FewzeroError("none of the given classes has a test item: nothing to evaluate")
    return 100.0 * float(np.mean(accuracies))


def harmonic_mean(u: float, s: float) -> float:
    """H = 2us / (u + s), 0 when both are 0."""
    return 0.0 if u + s == 0 else 2.0 * u * s / (u + s)


def zero_shot_accuracy(scores: torch.Tensor, labels: torch.Tensor, unseen_classes: torch.Tensor) -> float:
    """T1: (n, C) scores of unseen items, (n,) labels -> per-class top-1 (%) among the unseen classes only."""
    unseen = torch.as_tensor(unseen_classes).long().to(scores.device)
    pred = unseen[scores[:, unseen].argmax(1)]
    return per_class_accuracy(pred, labels, unseen)


def _sweep(scores, labels, seen_classes, unseen_classes, gammas) -> tuple[np.ndarray, np.ndarray]:
    """u and s (%) at each of ``gammas`` (G,), exactly and in O((n + G) log n): (G,), (G,)."""
    scores = torch.as_tensor(scores).double().cpu()
    labels = torch.as_tensor(labels).long().cpu()
    seen, unseen = torch.as_tensor(seen_classes).long(), torch.as_tensor(unseen_classes).long()
    best_seen, seen_arg = scores[:, seen].max(1)
    best_unseen, unseen_arg = scores[:, unseen].max(1)
    gap = (best_seen - best_unseen).numpy()  # an item is predicted seen while gamma < gap
    right_if_seen = (seen[seen_arg] == labels).numpy().astype(np.float64)
    right_if_unseen = (unseen[unseen_arg] == labels).numpy().astype(np.float64)
    order = np.argsort(gap, kind="stable")
    switched = np.searchsorted(gap[order], np.asarray(gammas, dtype=np.float64), side="right")
    result = []
    for group in (unseen, seen):
        members = torch.isin(labels, group).numpy()
        present = np.unique(labels.numpy()[members])
        if present.size == 0:
            raise FewzeroError("generalized zero-shot needs test items of both seen and unseen classes")
        counts = np.bincount(labels.numpy()[members], minlength=int(labels.max()) + 1)
        weight = np.where(members, 1.0 / (present.size * counts[labels.numpy()].clip(min=1)), 0.0)[order]
        before = np.concatenate([[0.0], np.cumsum(weight * right_if_seen[order])])  # prefix sums
        after = np.concatenate([[0.0], np.cumsum(weight * right_if_unseen[order])])
        result.append(np.clip(100.0 * (before[-1] - before[switched] + after[switched]), 0.0, 100.0))  # rounding
    return result[0], result[1]


def generalized_accuracy(scores, labels, seen_classes, unseen_classes, gamma: float = 0.0
                         ) -> tuple[float, float, float]:
    """(u, s, H) in % for (n, C) scores of seen and unseen test items, with ``gamma`` subtracted from seen scores."""
    u, s = _sweep(scores, labels, seen_classes, unseen_classes, [gamma])
    return float(u[0]), float(s[0]), harmonic_mean(float(u[0]), float(s[0]))


def _critical_gammas(scores, seen_classes, unseen_classes) -> np.ndarray:
    """Sorted unique values of gamma at which some item's prediction switches from seen to unseen."""
    scores = torch.as_tensor(scores).double().cpu()
    seen, unseen = torch.as_tensor(seen_classes).long(), torch.as_tensor(unseen_classes).long()
    return np.unique((scores[:, seen].max(1).values - scores[:, unseen].max(1).values).numpy())


def calibrate_gamma(scores, labels, seen_classes, unseen_classes, grid=None) -> float:
    """The calibration factor with the highest H on validation scores (n, C) and labels (n,).

    ``grid`` defaults to 0 plus the midpoints between consecutive critical values (and one value beyond each
    end), which covers every distinct outcome. Among equally good values the one closest to 0 wins.
    """
    if grid is None:
        critical = _critical_gammas(scores, seen_classes, unseen_classes)
        spread = max(float(critical[-1] - critical[0]), 1e-6)
        grid = np.concatenate([[0.0, critical[0] - spread], (critical[1:] + critical[:-1]) / 2,
                               [critical[-1] + spread]])
    grid = np.asarray(grid, dtype=np.float64)
    u, s = _sweep(scores, labels, seen_classes, unseen_classes, grid)
    h = np.where(u + s > 0, 2 * u * s / np.where(u + s > 0, u + s, 1), 0.0)
    best = np.flatnonzero(h >= h.max() - 1e-9)
    return float(grid[best[np.argmin(np.abs(grid[best]))]])


def seen_unseen_curve(scores, labels, seen_classes, unseen_classes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The seen-unseen accuracy curve: (gammas, u %, s %), from all-seen (u = 0) to all-unseen (s = 0)."""
    critical = _critical_gammas(scores, seen_classes, unseen_classes)
    gammas = np.concatenate([[-np.inf], critical])
    u, s = _sweep(scores, labels, seen_classes, unseen_classes, gammas)
    return gammas, u, s


def area_under_curve(u: np.ndarray, s: np.ndarray) -> float:
    """AUSUC: area under s against u (both in %, u non-decreasing), as a fraction of the unit square."""
    u, s = np.asarray(u) / 100.0, np.asarray(s) / 100.0
    return float(np.sum((u[1:] - u[:-1]) * (s[1:] + s[:-1]) / 2))


def save_curve_plot(u, s, path, marks: dict[str, tuple[float, float]] | None = None, title: str = "") -> Path:
    """Plot the seen-unseen accuracy curve (u on x, s on y, in %) to a PNG; ``marks`` labels single points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(u, s, color="tab:blue", label="gamma sweep")
    for (name, (mu, ms)), color in zip((marks or {}).items(), ("tab:red", "tab:green", "tab:orange")):
        ax.plot([mu], [ms], "o", color=color, label=name)
    ax.set(xlabel="u: unseen-class accuracy (%)", ylabel="s: seen-class accuracy (%)", xlim=(0, 100),
           ylim=(0, 100), title=title)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


@dataclass
class ZeroShotReport:
    """Result of evaluating one zero-shot learner on one benchmark (accuracies in %, AUSUC in 0..1).

    ``gamma`` is the calibration factor chosen on the validation split described by ``calibration``;
    ``curve`` holds (u, s) points of the seen-unseen curve on test (thinned to at most 500 for storage).
    """

    t1: float
    u: float
    s: float
    h: float
    calibrated_u: float
    calibrated_s: float
    calibrated_h: float
    gamma: float
    ausuc: float
    seconds: float
    fit_seconds: float
    n_seen: int
    n_unseen: int
    n_test_seen: int
    n_test_unseen: int
    calibration: str
    per_class_t1: dict[str, float] = field(default_factory=dict, repr=False)
    curve: list[list[float]] = field(default_factory=list, repr=False)
    curve_png: str | None = None
    info: dict = field(default_factory=dict)
    members: dict[str, float] | None = None  # an ensemble's members: name -> T1
    disagreement: list[list[float]] | None = None  # (M, M) % of unseen test items two members predict differently

    def __str__(self) -> str:
        return (f"T1 {self.t1:.2f} % | GZSL u {self.u:.2f} s {self.s:.2f} H {self.h:.2f} | calibrated "
                f"(gamma {self.gamma:.4g}) u {self.calibrated_u:.2f} s {self.calibrated_s:.2f} "
                f"H {self.calibrated_h:.2f} | AUSUC {self.ausuc:.4f} | {self.seconds:.1f} s")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON (atomically)."""
        return write_json(path, asdict(self))


def _local_labels(labels: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Map global class ids to their positions in ``classes``."""
    table = torch.full((int(max(labels.max(), classes.max())) + 1,), -1, dtype=torch.long)
    table[classes.long().cpu()] = torch.arange(classes.numel())
    return table[labels.long().cpu()]


@torch.no_grad()
def _scores(learner: ZeroShotLearner, x: torch.Tensor, semantics: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    return torch.cat([learner(x[i:i + batch], semantics).float().cpu() for i in range(0, x.shape[0], batch)])


def _fit(learner: ZeroShotLearner, x, y, semantics, classes) -> ZeroShotLearner:
    """Fit on items of ``classes`` only, with labels and semantics restricted to them."""
    return learner.fit(x, _local_labels(y, classes).to(x.device), semantics[classes])


def validation_gamma(learner: ZeroShotLearner, data: ZeroShotData, seed: int = 0, holdout: float = 0.2
                     ) -> tuple[float, str]:
    """Choose the calibration factor on training items only; returns (gamma, a description of how).

    A copy of ``learner`` is fitted on the pseudo-seen classes of ``calibration_split`` and scores the held-out
    pseudo-seen items and the pseudo-unseen (validation) class items against all seen classes; gamma maximises
    H there. Test items and unseen-class semantics play no part.
    """
    split = calibration_split(data, seed=seed, holdout=holdout)
    probe = _fit(copy.deepcopy(learner), data.train_x[split.fit_idx], data.train_y[split.fit_idx],
                 data.semantics, split.seen_classes)
    classes = torch.cat([split.seen_classes, split.unseen_classes])
    scores = _scores(probe, data.train_x[split.eval_idx], data.semantics[classes])
    labels = _local_labels(data.train_y[split.eval_idx], classes)
    n_seen = split.seen_classes.numel()
    gamma = calibrate_gamma(scores, labels, torch.arange(n_seen), torch.arange(n_seen, classes.numel()))
    source = "val_classes" if data.val_classes is not None and data.val_classes.numel() else \
        f"a seeded random {split.unseen_classes.numel()} seen classes (seed {seed})"
    how = (f"gamma maximises H on training items: a copy fitted on {n_seen} seen classes minus "
           f"{split.unseen_classes.numel()} pseudo-unseen ({source}), scored on {holdout:.0%} held-out items of "
           f"the former and all items of the latter")
    return gamma, how


def evaluate_zero_shot(learner: ZeroShotLearner, data: ZeroShotData, seed: int = 0, calibrate: bool = True,
                       holdout: float = 0.2, curve_path: str | os.PathLike | None = None) -> ZeroShotReport:
    """Fit ``learner`` on the seen-class training items of ``data`` and evaluate it on the test items.

    Args:
        learner: a zero-shot learner (fitted here, in place).
        data: the benchmark.
        seed: seeds the calibration split (the learner keeps its own seed).
        calibrate: choose gamma on a validation split (``validation_gamma``); else gamma = 0.
        holdout: fraction of pseudo-seen training items held out for calibration.
        curve_path: where to save the seen-unseen curve as a PNG (not saved when None).
    """
    started = time.perf_counter()
    seen, unseen = data.seen_classes.long().cpu(), data.unseen_classes.long().cpu()
    if data.test_seen_y.numel() == 0 or data.test_unseen_y.numel() == 0:
        raise FewzeroError("zero-shot evaluation needs test items of both seen and unseen classes")
    gamma, how = validation_gamma(learner, data, seed, holdout) if calibrate else (0.0, "not calibrated")
    fit_started = time.perf_counter()
    _fit(learner, data.train_x, data.train_y, data.semantics, seen)
    fit_seconds = time.perf_counter() - fit_started
    learner.eval()
    scores = torch.cat([_scores(learner, data.test_seen_x, data.semantics),
                        _scores(learner, data.test_unseen_x, data.semantics)])
    labels = torch.cat([data.test_seen_y, data.test_unseen_y]).long().cpu()
    unseen_rows = scores[data.test_seen_y.numel():]
    t1 = zero_shot_accuracy(unseen_rows, data.test_unseen_y.cpu(), unseen)
    unseen_pred = unseen[unseen_rows[:, unseen].argmax(1)]
    per_class = {data.class_names[c]: per_class_accuracy(unseen_pred, data.test_unseen_y.cpu(), [c])
                 for c in unseen.tolist() if bool((data.test_unseen_y.cpu() == c).any())}
    u, s, h = generalized_accuracy(scores, labels, seen, unseen)
    cu, cs, ch = generalized_accuracy(scores, labels, seen, unseen, gamma)
    _, curve_u, curve_s = seen_unseen_curve(scores, labels, seen, unseen)
    ausuc = area_under_curve(curve_u, curve_s)
    members, disagreement = _members_t1(learner, data) if hasattr(learner, "member_scores") else (None, None)
    keep = np.unique(np.linspace(0, curve_u.size - 1, min(curve_u.size, MAX_CURVE_POINTS)).round().astype(int))
    png = None
    if curve_path is not None:
        png = str(save_curve_plot(curve_u, curve_s, curve_path, {"gamma = 0": (u, s), "calibrated": (cu, cs)},
                                  title=f"{type(learner).__name__}: AUSUC {ausuc:.3f}"))
    return ZeroShotReport(
        t1=t1, u=u, s=s, h=h, calibrated_u=cu, calibrated_s=cs, calibrated_h=ch, gamma=gamma, ausuc=ausuc,
        seconds=time.perf_counter() - started, fit_seconds=fit_seconds, n_seen=seen.numel(),
        n_unseen=unseen.numel(), n_test_seen=data.test_seen_y.numel(), n_test_unseen=data.test_unseen_y.numel(),
        calibration=how, per_class_t1=per_class,
        curve=[[float(curve_u[i]), float(curve_s[i])] for i in keep], curve_png=png,
        info={"learner": type(learner).__name__, **data.info}, members=members, disagreement=disagreement)


@torch.no_grad()
def _members_t1(learner, data: ZeroShotData) -> tuple[dict[str, float], list[list[float]]]:
    """An ensemble's members on the unseen test items among the unseen classes: (name -> T1, (M, M) % of items on
    which two members' predictions differ)."""
    unseen = data.unseen_classes.long().cpu()
    scores = learner.member_scores(data.test_unseen_x, data.semantics[unseen]).cpu()  # (M, n, n_unseen)
    pred = unseen[scores.argmax(2)]
    truth = data.test_unseen_y.cpu()
    t1 = {name: per_class_accuracy(p, truth, unseen) for name, p in zip(learner.names, pred)}
    differ = (pred.unsqueeze(1) != pred.unsqueeze(0)).double().mean(2)
    return t1, (100.0 * differ).tolist()
