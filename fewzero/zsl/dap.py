"""DAP: direct attribute prediction (Lampert, Nickisch & Harmeling, CVPR 2009 / TPAMI 2014)."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from fewzero.registry import ZERO_SHOT
from fewzero.zsl.base import ZeroShotLearner

EPS = 1e-3


@ZERO_SHOT.register("dap")
class DAP(ZeroShotLearner):
    """One logistic regression per semantic dimension ("attribute"), combined into class scores.

    Attribute targets of a class: its semantics binarised at the per-dimension mean over the training classes
    (``binarize=True``, as in the paper), or min-max scaled to [0, 1] with the training classes' range (soft
    targets, ``binarize=False``). The regressions are fitted jointly by full-batch L-BFGS from zero (the loss
    separates over attributes, so this equals fitting each on its own; deterministic, no seed needed) on
    standardised features. A class with targets t scores
    ``sum_m t_m log(p_m(x) / pi_m) + (1 - t_m) log((1 - p_m(x)) / (1 - pi_m))``, the log of Lampert et al.'s
    ``prod_m p(a_m | x) / p(a_m)`` with the prior pi_m the mean target over training classes.

    Args:
        reg: L2 penalty on the regression weights (added to the mean binary cross-entropy).
        binarize: binary targets (paper) or soft targets in [0, 1].
        max_iter: L-BFGS iterations.
        normalize_semantics: see ``ZeroShotLearner``.
    """

    def __init__(self, *, reg: float = 1e-3, binarize: bool = True, max_iter: int = 200,
                 normalize_semantics: bool = True):
        super().__init__(normalize_semantics=normalize_semantics)
        self.reg, self.binarize, self.max_iter = reg, binarize, max_iter
        for name in ("mean_", "std_", "W_", "b_", "low_", "high_", "prior_"):
            self.register_buffer(name, None)

    def _targets(self, semantics: torch.Tensor) -> torch.Tensor:
        """(C, a) semantics -> (C, a) attribute targets in [0, 1]."""
        if self.binarize:
            return (semantics > self.low_).float()
        return ((semantics - self.low_) / (self.high_ - self.low_).clamp(min=1e-12)).clamp(0, 1)

    def _fit(self, x: torch.Tensor, y: torch.Tensor, semantics: torch.Tensor) -> None:
        present = semantics[y.unique()]
        if self.binarize:
            self.low_ = present.mean(0)  # the threshold
        else:
            self.low_, self.high_ = present.min(0).values, present.max(0).values
        targets = self._targets(semantics)
        self.prior_ = targets[y.unique()].mean(0).clamp(EPS, 1 - EPS)
        self.mean_, self.std_ = x.mean(0), x.std(0).clamp(min=1e-6)
        z = (x - self.mean_) / self.std_
        item_targets = targets[y]
        weight = torch.zeros(x.shape[1], semantics.shape[1], device=x.device, requires_grad=True)
        bias = torch.zeros(semantics.shape[1], device=x.device, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=self.max_iter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.binary_cross_entropy_with_logits(z @ weight + bias, item_targets)
            loss = loss + self.reg * weight.pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        self.W_, self.b_ = weight.detach(), bias.detach()

    def _score(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        logits = ((x - self.mean_) / self.std_) @ self.W_ + self.b_  # (n, a)
        targets = self._targets(semantics)  # (C', a)
        log_prior = targets @ self.prior_.log() + (1 - targets) @ (1 - self.prior_).log()
        return F.logsigmoid(logits) @ targets.T + F.logsigmoid(-logits) @ (1 - targets).T - log_prior
