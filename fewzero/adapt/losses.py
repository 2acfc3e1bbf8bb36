"""The alignment terms of the adaptation methods: multi-kernel MMD, the CORAL loss, gradient reversal.

All take feature batches ``source`` (n_s, d) and ``target`` (n_t, d) and return a scalar tensor.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

KERNEL_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)  # Gaussian bandwidths as multiples of the base (DAN: 2^-2 .. 2^2)
ESTIMATORS = ("quadratic", "linear")


def _kernel(sq_dist: torch.Tensor, base: torch.Tensor, multipliers: Sequence[float]) -> torch.Tensor:
    """Equal-weight sum of Gaussian kernels exp(-d^2 / (m * base)) over the bandwidth multipliers m."""
    return sum(torch.exp(-sq_dist / (m * base)) for m in multipliers) / len(multipliers)


def mk_mmd(source: torch.Tensor, target: torch.Tensor, *, multipliers: Sequence[float] = KERNEL_MULTIPLIERS,
           estimator: str = "quadratic", bandwidth: float | None = None) -> torch.Tensor:
    """Multi-kernel maximum mean discrepancy MMD^2 between two samples (Long et al. 2015, Gretton et al. 2012).

    ``quadratic``: the unbiased U-statistic over all pairs, (1/(n(n-1))) sum_{i!=j} k(s_i, s_j) + the same for the
    target - (2/(n m)) sum k(s_i, t_j). ``linear``: Gretton's unbiased linear-time estimator that DAN uses, averaging
    h = k(s1, s2) + k(t1, t2) - k(s1, t2) - k(s2, t1) over disjoint quadruples (needs equal even batch sizes).
    The kernel is an equal-weight mixture of Gaussians whose base bandwidth is ``bandwidth`` or, by default, the
    mean squared distance of the pooled sample (detached: the bandwidth is not a path for gradients). DAN learns
    the kernel weights by a quadratic program; equal weights are the common simplification.
    Can be slightly negative (it is unbiased); ~0 for two samples of one distribution.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    source, target = source.flatten(1), target.flatten(1)
    n, m = source.shape[0], target.shape[0]
    if n < 2 or m < 2:
        raise ValueError("MMD needs at least two samples from each domain")
    pooled = torch.cat([source, target])
    sq = torch.cdist(pooled, pooled).pow(2)
    base = torch.as_tensor(bandwidth, dtype=sq.dtype) if bandwidth is not None else \
        sq.detach().sum() / (sq.shape[0] * (sq.shape[0] - 1))
    base = base.clamp(min=1e-12)
    if estimator == "linear":
        if n != m or n % 2:
            raise ValueError("the linear-time MMD estimator needs equal, even batch sizes")
        s1, s2, t1, t2 = source[0::2], source[1::2], target[0::2], target[1::2]

        def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return _kernel((a - b).pow(2).sum(1), base, multipliers)
        return (k(s1, s2) + k(t1, t2) - k(s1, t2) - k(s2, t1)).mean()
    kernel = _kernel(sq, base, multipliers)
    k_ss, k_tt, k_st = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    within_s = (k_ss.sum() - k_ss.diagonal().sum()) / (n * (n - 1))
    within_t = (k_tt.sum() - k_tt.diagonal().sum()) / (m * (m - 1))
    return within_s + within_t - 2 * k_st.mean()


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL (Sun & Saenko 2016): ||C_s - C_t||_F^2 / (4 d^2), C the (d, d) sample covariances (n - 1)."""
    source, target = source.flatten(1), target.flatten(1)
    d = source.shape[1]
    return (torch.cov(source.T) - torch.cov(target.T)).pow(2).sum() / (4 * d * d)


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coefficient * grad, None


def reverse_gradient(x: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
    """Identity forward; the backward pass multiplies the gradient by ``-coefficient`` (Ganin & Lempitsky 2015)."""
    return _GradientReversal.apply(x, float(coefficient))


def dann_coefficient(progress: float, *, gamma: float = 10.0) -> float:
    """Ganin et al. 2016's schedule of the reversal coefficient: 2 / (1 + exp(-gamma p)) - 1 for progress p in [0, 1]
    (0 at the start, so the domain classifier's noisy early gradients do not reach the features; -> 1)."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def annealed_lr(progress: float, *, lr: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """Ganin et al. 2016's learning-rate schedule lr / (1 + alpha p)^beta, also used by DAN."""
    return lr / (1.0 + alpha * progress) ** beta
