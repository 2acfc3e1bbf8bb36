"""The checks of a run configuration: types, names, number ranges, consistency between keys, and the device.

``fewzero.config`` builds its ``RunConfig`` with these (``validate``); this module knows the config only by its
keys, so it imports nothing from there. Every message names where the bad value came from (a ``Where``).
"""
from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fewzero.errors import FewzeroError
from fewzero.precision import PRECISIONS
from fewzero.registry import BACKBONES, DATASETS, LEARNERS, Registry

if TYPE_CHECKING:
    import torch

LR_SCHEDULES = ("step", "cosine")
DEVICE_TYPES = ("cpu", "cuda", "mps")
AT_LEAST_ONE = ("image_size", "train_way", "train_shot", "train_query", "test_way", "test_shot", "test_query",
                "episodes", "meta_batch", "lr_step", "val_every", "val_episodes", "test_episodes", "epochs",
                "batch_size")
AT_LEAST_ZERO = ("seed", "test_seed", "augment_shift")

Where = Callable[[str], str]  # config key -> " in <file>" / " (from --lr)" / "" (a default)


def check_device(name: str, require_available: bool = True, where: str = "") -> torch.device:
    """Parse a device name (``cpu``, ``cuda``, ``cuda:1``, ``mps``) into a ``torch.device``.

    With ``require_available`` the device must also exist on this machine (a CUDA build with that many GPUs, or
    MPS); without it only the name is checked, so a config saved on a GPU machine stays valid on a CPU one.

    Raises:
        FewzeroError: the name is not a device, or (``require_available``) the device is not on this machine.
    """
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise FewzeroError(f"unknown device {name!r}{where}: use cpu, cuda, cuda:<index> or mps") from None
    if device.type not in DEVICE_TYPES:
        raise FewzeroError(f"device {name!r}{where} is not supported: use cpu, cuda, cuda:<index> or mps")
    if require_available:
        _check_available(device, name, where)
    return device


def _check_available(device: torch.device, name: str, where: str) -> None:
    import torch

    if device.type == "cuda":
        if not torch.cuda.is_available():
            reason = ("this PyTorch build has no CUDA support" if torch.version.cuda is None
                      else "no CUDA GPU is visible")
            raise FewzeroError(f"device {name!r}{where} is not available ({reason}): use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise FewzeroError(f"device {name!r}{where} is not available: this machine has {count} CUDA device(s), "
                               f"cuda:0 to cuda:{count - 1}; pick one of them or use --device cpu")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise FewzeroError(f"device {name!r}{where} is not available (no Apple MPS device here): "
                               f"use --device cpu")
        if device.index not in (None, 0):
            raise FewzeroError(f"device {name!r}{where} is not available: MPS has only mps:0")


def locator(values: dict[str, Any], where: str, origins: dict[str, str] | None) -> Where:
    """Where a key's value came from: its origin (a flag, ``--set``), else ``where`` if ``values`` holds it."""
    origins = origins or {}

    def at(key: str) -> str:
        if key in origins:
            return f" (from {origins[key]})"
        head = key.partition(".")[0]
        if head != key and head in origins:
            return f" (from {origins[head]})"
        return where if head in values else ""
    return at


def check_types(values: dict[str, Any], hints: dict[str, Any], at: Where) -> dict[str, Any]:
    """``values`` with each value checked against (and converted to) the type hint of its key in ``hints``."""
    checked = {}
    for key, value in values.items():
        if key not in hints:
            raise FewzeroError(f"unknown config key {key!r}{at(key)}: valid keys are {', '.join(hints)}")
        checked[key] = _check_type(key, value, hints[key], at(key))
    return checked


def _check_type(key: str, value: Any, expected: Any, where: str) -> Any:
    allowed = typing.get_args(expected) or (expected,)
    if value is None and type(None) in allowed:
        return None
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tuple in allowed and isinstance(value, list):  # YAML has lists, not tuples
        return tuple(value)
    for kind in allowed:
        if kind is not type(None) and isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
    names = "/".join(k.__name__ for k in allowed if k is not type(None))
    raise FewzeroError(f"config key {key!r}{where} must be {names}, got {value!r}")


def check_config(config: Any, at: Where) -> None:
    """Check a config whose keys have their types: the names it uses, their keyword arguments (replaced by the
    checked ones), the number ranges, the device name and the consistency between keys."""
    _check_name(LEARNERS, config.method, at("method"))
    _check_name(BACKBONES, config.backbone, at("backbone"))
    _check_name(DATASETS, config.dataset, at("dataset"))
    config.learner = _check_keyword_args("learner", config.learner, LEARNERS.parameters(config.method), at)
    config.backbone_args = _check_keyword_args("backbone_args", config.backbone_args,
                                               BACKBONES.parameters(config.backbone), at)
    _check_numbers(config, at)
    check_device(config.device, require_available=False, where=at("device"))
    _check_consistency(config, at)


def _check_keyword_args(key: str, values: dict, factory_params: dict[str, inspect.Parameter], at: Where) -> dict:
    checked = {}
    for name, value in values.items():
        param = factory_params.get(name)
        if param is None or name == "backbone" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            valid = ", ".join(p for p, v in factory_params.items() if p != "backbone"
                              and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)) or "none"
            raise FewzeroError(f"unknown key {key}.{name}{at(f'{key}.{name}')}: valid keys are {valid}")
        if param.default not in (None, inspect.Parameter.empty):
            value = _check_type(f"{key}.{name}", value, type(param.default), at(f"{key}.{name}"))
            if isinstance(value, float) and not math.isfinite(value):
                raise FewzeroError(f"config key '{key}.{name}'{at(f'{key}.{name}')} must be a finite number, "
                                   f"got {value}")
        elif (param.default is None and str(param.annotation).startswith("dict")
              and not isinstance(value, (dict, type(None)))):  # e.g. test_inner_lr_by_shot
            example = "{1: 0.4, 5: 0.1}" if name.endswith("_by_shot") else "{name: value}"
            raise FewzeroError(f"config key '{key}.{name}'{at(f'{key}.{name}')} must be a mapping such as {example} "
                               f"(or null), got {value!r}")
        checked[name] = value
    return checked


def _check_name(registry: Registry, name: str, where: str) -> None:
    if name not in registry:
        raise FewzeroError(f"unknown {registry.kind} {name!r}{where}: choose one of {', '.join(registry.available())}")
    registry.get(name)


def _check_numbers(config: Any, at: Where) -> None:
    for key in AT_LEAST_ONE:
        if getattr(config, key) < 1:
            raise FewzeroError(f"config key {key!r}{at(key)} must be >= 1, got {getattr(config, key)}")
    for key in AT_LEAST_ZERO:
        if getattr(config, key) < 0:
            raise FewzeroError(f"config key {key!r}{at(key)} must be >= 0, got {getattr(config, key)}")
    for key, low, strict in (("lr", 0.0, True), ("lr_gamma", 0.0, True), ("weight_decay", 0.0, False),
                             ("lr_min", 0.0, False), ("max_minutes", 0.0, True)):
        value = getattr(config, key)
        if value is None:
            continue
        if not math.isfinite(value) or (value <= low if strict else value < low):
            hint = " (or null for no time limit)" if key == "max_minutes" else ""
            raise FewzeroError(f"config key {key!r}{at(key)} must be a finite number {'>' if strict else '>='} "
                               f"{low:g}{hint}, got {value}")


def _check_consistency(config: Any, at: Where) -> None:
    every = config.checkpoint_every
    if every is not None and (every < 1 or every % config.meta_batch):
        raise FewzeroError(f"checkpoint_every ({config.checkpoint_every}){at('checkpoint_every')} must be a positive "
                           f"multiple of meta_batch ({config.meta_batch}){at('meta_batch')} (or null: at each validation)")
    if config.val_every % config.meta_batch:
        raise FewzeroError(f"val_every ({config.val_every}){at('val_every')} must be a multiple of meta_batch "
                           f"({config.meta_batch}){at('meta_batch')} so that checkpoints fall between optimizer steps")
    from fewzero.distributed import BACKENDS

    if config.dist_backend not in BACKENDS:
        raise FewzeroError(f"config key 'dist_backend'{at('dist_backend')} must be one of {', '.join(BACKENDS)}, "
                           f"got {config.dist_backend!r}")
    from fewzero.transfer.objectives import OBJECTIVES

    if config.objective not in OBJECTIVES:
        raise FewzeroError(f"config key 'objective'{at('objective')} must be one of {', '.join(OBJECTIVES)}, "
                           f"got {config.objective!r}")
    if 2 * config.augment_shift >= config.image_size:
        raise FewzeroError(f"config key 'augment_shift' ({config.augment_shift}){at('augment_shift')} must be under "
                           f"half the image_size ({config.image_size}){at('image_size')}")
    if config.precision not in PRECISIONS:
        raise FewzeroError(f"config key 'precision'{at('precision')} must be one of {', '.join(PRECISIONS)}, "
                           f"got {config.precision!r}")
    if config.lr_schedule not in LR_SCHEDULES:
        raise FewzeroError(f"config key 'lr_schedule'{at('lr_schedule')} must be one of {', '.join(LR_SCHEDULES)}, "
                           f"got {config.lr_schedule!r}")
