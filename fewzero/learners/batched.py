"""Adapting all tasks of a meta-batch at once with ``torch.func.vmap`` (tasks stacked on a leading dimension).

Inside ``vmapping()`` the MAML family takes its inner-loop gradients with ``torch.func.grad`` instead of
``torch.autograd.grad`` and skips what vmap cannot do (memory-layout queries, ``.item()`` checks, which run on each
task before the vmapped call instead). Batch norm is computed from composite operations there: with the fused kernel,
torch 2.13's vmap gives second-order meta-gradients that differ from the loop's (by 1e-3 relative on Conv4 in
float64; ``tests/test_vmap.py`` compares every learner against the loop).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch.nn import functional as F

from fewzero.episode import Episode
from fewzero.errors import FewzeroError

_depth = 0


def active() -> bool:
    """Whether the caller runs inside ``vmapping()`` (a vmapped meta-batch)."""
    return _depth > 0


def _composite_batch_norm(original):
    def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                   eps=1e-5):
        if not training or running_mean is not None:  # running statistics: not a vmapped path here
            return original(input, running_mean, running_var, weight, bias, training, momentum, eps)
        dims = [0, *range(2, input.ndim)]
        shape = [1, -1] + [1] * (input.ndim - 2)
        mean = input.mean(dims, keepdim=True)
        var = input.var(dims, unbiased=False, keepdim=True)
        out = (input - mean) * torch.rsqrt(var + eps)
        if weight is not None:
            out = out * weight.view(shape)
        if bias is not None:
            out = out + bias.view(shape)
        return out
    return batch_norm


@contextmanager
def vmapping() -> Iterator[None]:
    """Within the block ``active()`` is true and batch norm with batch statistics uses composite operations."""
    global _depth
    original = F.batch_norm
    _depth += 1
    F.batch_norm = _composite_batch_norm(original)
    try:
        yield
    finally:
        _depth -= 1
        F.batch_norm = original


def stack_episodes(episodes: Sequence[Episode]) -> tuple[torch.Tensor, ...]:
    """(support_x, support_y, query_x, query_y), each with the tasks on a new leading dimension (B, ...).

    Episodes of one meta-batch share their shape (ways, shots, queries); others get a FewzeroError.
    """
    shapes = {(e.support_x.shape, e.support_y.shape, e.query_x.shape, e.query_y.shape) for e in episodes}
    if len(shapes) != 1:
        raise FewzeroError("the tasks of a vmapped meta-batch must have one shape (ways, shots, queries): "
                           "set learner.vmap=false for tasks of mixed shapes")
    return tuple(torch.stack([getattr(e, name) for e in episodes])
                 for name in ("support_x", "support_y", "query_x", "query_y"))
