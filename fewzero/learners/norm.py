"""Batch norm for gradient-based meta-learners: batch statistics always, or the support set's statistics.

``use_batch_statistics`` drops a backbone's running averages so every forward pass normalises with the statistics of
its own batch (what Finn et al. 2017 do in training and at test time: "transductive"). For the inductive setting,
``support_statistics`` records each layer's input mean and (biased) variance on the support set, and
``norm_with_stats`` lets ``functional_call`` normalise the queries with them instead.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

BATCH_NORM_MODES = ("transductive", "inductive")


def norm_layers(module: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """The batch-norm layers of ``module`` with their qualified names."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, _BatchNorm)]


def use_batch_statistics(module: nn.Module) -> None:
    """Make every batch-norm layer of ``module`` normalise with batch statistics, in train and eval mode alike."""
    for _, layer in norm_layers(module):
        layer.track_running_stats = False
        layer.running_mean = layer.running_var = layer.num_batches_tracked = None


def support_statistics(module: nn.Module, run: Callable[[], object]) -> dict[str, torch.Tensor]:
    """Call ``run()`` (a forward pass of ``module`` on the support set) and return, for every batch-norm layer,
    ``{"<name>.running_mean": (C,), "<name>.running_var": (C,)}``: the batch statistics it normalised with."""
    stats: dict[str, torch.Tensor] = {}

    def recorder(name: str):
        def hook(layer: nn.Module, args: tuple) -> None:
            h = args[0]
            dims = [d for d in range(h.ndim) if d != 1]
            stats[f"{name}.running_mean"] = h.mean(dims)
            stats[f"{name}.running_var"] = h.var(dims, unbiased=False)
        return hook

    handles = [layer.register_forward_pre_hook(recorder(name)) for name, layer in norm_layers(module)]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return stats


@contextmanager
def norm_with_stats(layers: list[tuple[str, _BatchNorm]]) -> Iterator[None]:
    """Within the block the layers use the statistics passed to ``functional_call`` as ``running_mean/var``."""
    modes = [layer.training for _, layer in layers]
    try:
        for _, layer in layers:
            layer.training = False
        yield
    finally:
        for (_, layer), mode in zip(layers, modes):
            layer.training = mode
