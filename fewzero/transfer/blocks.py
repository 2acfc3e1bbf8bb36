"""The blocks of a network, freezing the first k of them, and per-block learning rates.

A network's blocks come from the network itself, never from parameter names: a module with a ``named_blocks()``
method (every registered backbone; a learner with a head adds ``("head", head)``) lists them input side first, and a
plain ``nn.Sequential`` has its children as blocks, named by their keys (``"0"``, ``"1"``, ...).
"""
from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from fewzero.errors import FewzeroError

_FROZEN_HOOKS = "_fewzero_frozen_bn_hooks"


def named_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``[(name, block), ...]`` input side first: ``model.named_blocks()``, or an ``nn.Sequential``'s children."""
    if hasattr(model, "named_blocks"):
        return list(model.named_blocks())
    if isinstance(model, nn.Sequential):
        return list(model.named_children())
    raise FewzeroError(f"{type(model).__name__} does not say what its blocks are: give it a named_blocks() method "
                       f"returning [(name, module), ...] input side first, or wrap its layers in an nn.Sequential")


def block_names(model: nn.Module) -> list[str]:
    return [name for name, _ in named_blocks(model)]


def _keep_in_eval_mode(module: nn.Module, _inputs) -> None:
    module.train(False)  # model.train() sets it back; the frozen statistics must not move in the next forward


def freeze(model: nn.Module, *, up_to: int) -> nn.Module:
    """Freeze the first ``up_to`` blocks (0 = none, ``len(blocks)`` = all) and unfreeze the rest; returns ``model``.

    A frozen block's parameters stop requiring gradients and its batch-norm layers normalise with their running
    statistics, which no longer change, also after ``model.train()``.
    """
    blocks = named_blocks(model)
    if isinstance(up_to, bool) or not isinstance(up_to, int) or not 0 <= up_to <= len(blocks):
        raise FewzeroError(f"cannot freeze {up_to!r} blocks of {type(model).__name__}: it has {len(blocks)} "
                           f"({', '.join(name for name, _ in blocks) or 'none'}); give 0..{len(blocks)}")
    for index, (_, block) in enumerate(blocks):
        frozen = index < up_to
        for parameter in block.parameters():
            parameter.requires_grad_(not frozen)
        for module in block.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                handle = getattr(module, _FROZEN_HOOKS, None)
                if frozen and handle is None:
                    setattr(module, _FROZEN_HOOKS, module.register_forward_pre_hook(_keep_in_eval_mode))
                    module.train(False)
                elif not frozen and handle is not None:
                    handle.remove()
                    delattr(module, _FROZEN_HOOKS)
    return model


def _check_lr(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise FewzeroError(f"learning rate {what} must be a number >= 0, got {value!r}")
    return float(value)


def param_groups(model: nn.Module, *, lr: float = 1e-3, lrs: Mapping[str, float] | None = None,
                 decay: float | None = None) -> list[dict]:
    """Optimizer parameter groups, one per block (``{"name", "params", "lr"}``), input side first.

    Args:
        model: a network with blocks (see ``named_blocks``).
        lr: the learning rate of every block not named in ``lrs``, and of the last block under ``decay``.
        lrs: block name -> learning rate, e.g. ``{"block1": 1e-4, "head": 1e-2}``.
        decay: discriminative learning rates: block ``i`` of ``n`` gets ``lr * decay ** (n - 1 - i)``.

    Parameters outside every block go in a last group named ``"other"`` with ``lr``; frozen parameters (that do not
    require gradients) are left out, and so is a group left empty.
    """
    blocks = named_blocks(model)
    lr = _check_lr(lr, "lr")
    if lrs is not None and decay is not None:
        raise FewzeroError("give per-block learning rates (lrs) or a decay factor, not both")
    if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float)) or not decay > 0):
        raise FewzeroError(f"lr decay must be a number > 0, got {decay!r}")
    lrs = dict(lrs or {})
    unknown = sorted(set(lrs) - {name for name, _ in blocks})
    if unknown:
        raise FewzeroError(f"unknown block {', '.join(map(repr, unknown))} in the learning rates: {type(model).__name__}"
                           f" has {', '.join(name for name, _ in blocks) or 'no blocks'}")
    groups, seen = [], set()
    for index, (name, block) in enumerate(blocks):
        rate = lr * decay ** (len(blocks) - 1 - index) if decay is not None else _check_lr(lrs.get(name, lr), name)
        params = [p for p in block.parameters() if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in block.parameters())
        if params:
            groups.append({"name": name, "params": params, "lr": rate})
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
    if rest:
        groups.append({"name": "other", "params": rest, "lr": lr})
    return groups
