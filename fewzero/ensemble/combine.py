"""Combining members' scores: calibrated weighted mean of probabilities, or class-wise stacking.

Everything here works on plain tensors: ``member_logits`` is (M, N, W) for M members, N items and W classes, and
the fitting functions take validation scores as a list of such tensors (one per episode, W may differ between
episodes) with their (N,) labels. Nothing here ever sees test data unless a caller passes it.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.errors import FewzeroError

COMBINES = ("mean_prob", "stacking")
TEMPERATURES = torch.logspace(-3, 3, 61, dtype=torch.float64)  # calibration grid (per member)
MAX_GRID = 5000  # simplex grid points before the weight search turns to Dirichlet samples
RANDOM_CANDIDATES = 3000
MAX_STACKING_ITEMS = 20000  # validation items (rows x classes) the stacker is fitted on, at most


def check_combine(mode: str) -> str:
    if mode not in COMBINES:
        raise FewzeroError(f"unknown combine mode {mode!r}: use one of {', '.join(COMBINES)}")
    return mode


def check_validation(member_logits: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], n_members: int
                     ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pair each (M, N, W) score tensor with its (N,) labels, checking the shapes; float64 on the CPU."""
    if len(member_logits) == 0 or len(member_logits) != len(labels):
        raise FewzeroError(f"validation needs one label tensor per score tensor and at least one of each, got "
                           f"{len(member_logits)} score and {len(labels)} label tensors")
    pairs = []
    for scores, y in zip(member_logits, labels):
        scores, y = torch.as_tensor(scores).detach().double().cpu(), torch.as_tensor(y).long().cpu()
        if scores.ndim != 3 or scores.shape[0] != n_members or scores.shape[1] != y.numel():
            raise FewzeroError(f"validation scores must be (members={n_members}, items, classes) with one label per "
                               f"item, got {tuple(scores.shape)} and {y.numel()} labels")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= scores.shape[2]):
            raise FewzeroError("validation labels must index the classes of their scores (0..W-1)")
        pairs.append((scores, y))
    return pairs


def _grouped(pairs) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Concatenate episodes with the same number of classes: [(M, N, W), (N,)] per distinct W."""
    groups: dict[int, list] = {}
    for scores, y in pairs:
        groups.setdefault(scores.shape[2], []).append((scores, y))
    return [(torch.cat([s for s, _ in g], 1), torch.cat([y for _, y in g])) for g in groups.values()]


def choose_temperatures(pairs) -> torch.Tensor:
    """Per member, the temperature of ``TEMPERATURES`` whose ``log_softmax(t * logits)`` has the best validation
    log-likelihood: (M,). Members' logits live on different scales; calibrated probabilities can be averaged."""
    n_members = pairs[0][0].shape[0]
    nll = torch.zeros(n_members, TEMPERATURES.numel(), dtype=torch.float64)
    for scores, y in _grouped(pairs):
        for k, t in enumerate(TEMPERATURES):
            logp = torch.log_softmax(t * scores, dim=2)  # (M, N, W)
            nll[:, k] -= logp.gather(2, y.view(1, -1, 1).expand(n_members, -1, 1)).squeeze(2).sum(1)
    return TEMPERATURES[nll.argmin(1)]


def simplex_candidates(n_members: int, *, step: float = 0.1, seed: int = 0) -> torch.Tensor:
    """Candidate weights (K, M) on the simplex: the grid of multiples of ``step`` when it has at most ``MAX_GRID``
    points, else the vertices, the centre and seeded flat-Dirichlet samples."""
    parts = round(1 / step)
    if not math.isclose(parts * step, 1.0) or parts < 1:
        raise FewzeroError(f"step must divide 1 (0.1, 0.2, 0.25, ...), got {step}")
    if math.comb(parts + n_members - 1, n_members - 1) <= MAX_GRID:
        grid = [c for c in itertools.product(range(parts + 1), repeat=n_members - 1) if sum(c) <= parts]
        return torch.tensor([[*c, parts - sum(c)] for c in grid], dtype=torch.float64) / parts
    generator = torch.Generator().manual_seed(seed)
    samples = -torch.log(torch.rand(RANDOM_CANDIDATES, n_members, generator=generator, dtype=torch.float64))
    return torch.cat([torch.eye(n_members, dtype=torch.float64),
                      torch.full((1, n_members), 1.0 / n_members, dtype=torch.float64),
                      samples / samples.sum(1, keepdim=True)])


def choose_weights(pairs, temperatures: torch.Tensor, *, step: float = 0.1, seed: int = 0) -> torch.Tensor:
    """The simplex weights (M,) whose mean of calibrated probabilities has the best validation accuracy; ties go to
    the better log-likelihood, then to the weights closest to uniform."""
    n_members = pairs[0][0].shape[0]
    candidates = simplex_candidates(n_members, step=step, seed=seed)
    correct = torch.zeros(candidates.shape[0], dtype=torch.float64)
    loglik = torch.zeros_like(correct)
    for scores, y in _grouped(pairs):
        probs = torch.softmax(temperatures.view(-1, 1, 1) * scores, dim=2)  # (M, N, W)
        chunk = max(1, int(2e7 // probs[0].numel()))
        for start in range(0, candidates.shape[0], chunk):
            mixture = torch.einsum("km,mnw->knw", candidates[start:start + chunk], probs)
            correct[start:start + chunk] += (mixture.argmax(2) == y).sum(1)
            picked = mixture.gather(2, y.view(1, -1, 1).expand(mixture.shape[0], -1, 1)).squeeze(2)
            loglik[start:start + chunk] += picked.clamp(min=1e-300).log().sum(1)
    spread = (candidates - 1.0 / n_members).norm(dim=1)
    best = max(range(candidates.shape[0]), key=lambda k: (float(correct[k]), float(loglik[k]), -float(spread[k])))
    return candidates[best]


def class_features(member_logits: torch.Tensor, temperatures: torch.Tensor) -> torch.Tensor:
    """Stacking features of every (item, class) pair: each member's calibrated log-probability and probability of
    that class, (M, N, W) -> (N, W, 2M). The same function for every class, so stacking is label-order free."""
    logp = torch.log_softmax(temperatures.view(-1, 1, 1).to(member_logits) * member_logits, dim=2)
    return torch.cat([logp, logp.exp()]).permute(1, 2, 0)


STACKING_CS = (0.001, 0.01, 0.1, 1.0, 10.0)  # inverse regularisation strengths tried by cross-validation
STACKING_FOLDS = 5


def _stacking_rows(pairs, temperatures: torch.Tensor, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per episode, the features (N, W, 2M) and labels (N,) of at most ``MAX_STACKING_ITEMS`` items in all (a seeded
    sample)."""
    n_items = sum(y.numel() for _, y in pairs)
    keep = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed))[:MAX_STACKING_ITEMS]
    rows, offset = [], 0
    for scores, y in pairs:
        local = keep[(keep >= offset) & (keep < offset + y.numel())] - offset
        if local.numel():
            rows.append((class_features(scores[:, local], temperatures), y[local]))
        offset += y.numel()
    return rows


def _fit_logistic(rows, c: float) -> tuple[torch.Tensor, float]:
    from sklearn.linear_model import LogisticRegression

    x = torch.cat([f.reshape(-1, f.shape[2]) for f, _ in rows]).numpy()
    t = torch.cat([F.one_hot(y, f.shape[1]).reshape(-1) for f, y in rows]).numpy()
    if t.min() == t.max():
        raise FewzeroError("stacking needs validation items with at least two classes")
    model = LogisticRegression(C=c, max_iter=2000).fit(x, t)
    return torch.as_tensor(model.coef_[0], dtype=torch.float64), float(model.intercept_[0])


def choose_stacking_c(rows, seed: int = 0) -> float:
    """The C of ``STACKING_CS`` whose stacker predicts held-out validation items best (``STACKING_FOLDS``-fold
    cross-validation over items; ties go to the smaller C, the stronger regularisation)."""
    generator = torch.Generator().manual_seed(seed + 1)
    folds = [torch.randperm(y.numel(), generator=generator) % STACKING_FOLDS for _, y in rows]
    correct = []
    for c in STACKING_CS:
        hits = 0
        for k in range(STACKING_FOLDS):
            train = [(f[fold != k], y[fold != k]) for (f, y), fold in zip(rows, folds) if bool((fold != k).any())]
            coef, intercept = _fit_logistic(train, c)
            hits += sum(int(((f[fold == k] @ coef + intercept).argmax(1) == y[fold == k]).sum())
                        for (f, y), fold in zip(rows, folds))
        correct.append(hits)
    return STACKING_CS[max(range(len(STACKING_CS)), key=lambda i: (correct[i], -i))]


def fit_stacker(pairs, temperatures: torch.Tensor, *, c: float | None = None, seed: int = 0
                ) -> tuple[torch.Tensor, float, float]:
    """A logistic regression (scikit-learn) that tells from a pair's features whether the class is the item's
    true class, fitted on validation pairs (at most ``MAX_STACKING_ITEMS`` items, a seeded sample); ``c`` None
    chooses it by cross-validation on those items. Returns (coef (2M,), intercept, C)."""
    rows = _stacking_rows(pairs, temperatures, seed)
    if c is None:
        c = choose_stacking_c(rows, seed)
    return (*_fit_logistic(rows, c), c)


class Combiner(nn.Module):
    """Turns (M, N, W) member logits into (N, W) ensemble logits; its state is fitted by ``fit`` on validation
    scores only.

    Before ``fit``: temperatures 1 and uniform weights (an ensemble of one member returns its log-probabilities).

    Args:
        n_members: M.
        mode: ``mean_prob`` (log of the weighted mean of the members' probabilities) or ``stacking``.
        calibrate: choose a temperature per member on validation before combining.
        step: grid step of the simplex search of the ``mean_prob`` weights.
        stacking_c: inverse regularisation strength of the stacking logistic regression (None: chosen by
            cross-validation on the validation items, ``choose_stacking_c``).
        seed: seeds the weight search's random candidates and the stacker's sample.
    """

    def __init__(self, n_members: int, *, mode: str = "mean_prob", calibrate: bool = True, step: float = 0.1,
                 stacking_c: float | None = None, seed: int = 0):
        super().__init__()
        if n_members < 1:
            raise FewzeroError("an ensemble needs at least one member: list them under members")
        if stacking_c is not None and (isinstance(stacking_c, bool) or not isinstance(stacking_c, (int, float))
                                       or not stacking_c > 0):
            raise FewzeroError(f"stacking_c must be a positive number (or null: chosen by cross-validation), got "
                               f"{stacking_c!r}")
        self.mode, self.calibrate, self.step = check_combine(mode), calibrate, step
        self.stacking_c, self.seed = stacking_c, seed
        self.register_buffer("temperatures_", torch.ones(n_members, dtype=torch.float64))
        self.register_buffer("weights_", torch.full((n_members,), 1.0 / n_members, dtype=torch.float64))
        self.register_buffer("coef_", None)
        self.register_buffer("intercept_", None)
        self.chosen_c_: float | None = None

    @property
    def n_members(self) -> int:
        return self.weights_.numel()

    def fit(self, member_logits: Sequence[torch.Tensor], labels: Sequence[torch.Tensor]) -> "Combiner":
        """Fit temperatures and weights (or the stacker) on validation: a list of (M, N, W) and of (N,) labels."""
        pairs = check_validation(member_logits, labels, self.n_members)
        device = self.weights_.device
        temperatures = choose_temperatures(pairs) if self.calibrate else torch.ones(self.n_members).double()
        self.temperatures_ = temperatures.to(device)
        if self.mode == "mean_prob":
            self.weights_ = choose_weights(pairs, temperatures, step=self.step, seed=self.seed).to(device)
        else:
            coef, intercept, self.chosen_c_ = fit_stacker(pairs, temperatures, c=self.stacking_c, seed=self.seed)
            self.coef_, self.intercept_ = coef.to(device), torch.tensor(intercept, dtype=torch.float64, device=device)
        return self

    def forward(self, member_logits: torch.Tensor) -> torch.Tensor:
        """(M, N, W) member logits -> (N, W) ensemble logits (in the members' dtype)."""
        if member_logits.ndim != 3 or member_logits.shape[0] != self.n_members:
            raise FewzeroError(f"expected ({self.n_members}, n, n_classes) member logits, got "
                               f"{tuple(member_logits.shape)}")
        t = self.temperatures_.to(member_logits)
        if self.mode == "stacking":
            if self.coef_ is None:
                raise FewzeroError("the stacker is not fitted: fit the ensemble's combiner on validation scores "
                                   "first (fit_combiner), or use combine: mean_prob")
            return class_features(member_logits, t) @ self.coef_.to(member_logits) + self.intercept_.to(member_logits)
        logp = torch.log_softmax(t.view(-1, 1, 1) * member_logits, dim=2)
        return torch.logsumexp(logp + self.weights_.to(member_logits).log().view(-1, 1, 1), dim=0)

    def describe(self, names: Sequence[str]) -> str:
        """One line: the chosen weights (or stacking coefficients) and temperatures per member."""
        t = self.temperatures_.tolist()
        if self.mode == "stacking" and self.coef_ is not None:
            coef = self.coef_.view(2, -1).tolist()
            parts = [f"{n} (log-prob {a:+.3g}, prob {b:+.3g}, T {tm:.3g})" for n, a, b, tm in zip(names, *coef, t)]
            return f"stacking coefficients (C {self.chosen_c_:g}): " + ", ".join(parts)
        return f"{self.mode} weights: " + ", ".join(f"{n} {w:.2f} (T {tm:.3g})"
                                                     for n, w, tm in zip(names, self.weights_.tolist(), t))
