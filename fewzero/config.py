"""Run configuration: YAML defaults per (method, dataset), validated into a dataclass; flags override them.

Defaults come from ``configs/<method>_<dataset>.yaml`` when it exists (top-level ``configs/``, shipped in the wheel),
else from the dataclass. Unknown keys and values of the wrong type are errors. Every error names where the bad value
came from: the YAML file, a flag or ``--set`` (``origins`` of ``load_config``), or a checkpoint.
"""
from __future__ import annotations

import inspect
import math
import re
import typing
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from fewzero.errors import FewzeroError
from fewzero.paths import config_dir
from fewzero.registry import BACKBONES, DATASETS, LEARNERS, Registry

if TYPE_CHECKING:
    import torch

CONFIG_DIR = config_dir()
PRECISIONS = ("fp32", "bf16")
DEVICE_TYPES = ("cpu", "cuda", "mps")


@dataclass
class RunConfig:
    """Everything that defines a training or evaluation run."""

    method: str = "protonet"
    dataset: str = "omniglot"
    split: str = "vinyals"
    backbone: str = "conv4"
    image_size: int = 28
    train_subset: str = "train"
    val_subset: str = "val"
    test_subset: str = "test"
    train_way: int = 60
    train_shot: int = 1
    train_query: int = 5
    test_way: int = 5
    test_shot: int = 1
    test_query: int = 15
    episodes: int = 5000
    meta_batch: int = 1  # episodes whose losses are averaged per optimizer step
    lr: float = 1e-3
    lr_step: int = 2000
    lr_gamma: float = 0.5
    weight_decay: float = 0.0
    val_every: int = 500
    val_episodes: int = 200
    test_episodes: int = 1000
    seed: int = 0
    test_seed: int = 0
    max_minutes: typing.Optional[float] = None
    device: str = "cpu"
    workers: int = 1  # processes sharing each meta-batch (fewzero.parallel); the episodes seen do not change
    precision: str = "fp32"  # training arithmetic: fp32, or bf16 autocast (about 2x faster on CPUs with AVX-512 BF16)
    learner: dict = field(default_factory=dict)
    backbone_args: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_HINTS = typing.get_type_hints(RunConfig)
FIELDS = [f.name for f in fields(RunConfig)]
AT_LEAST_ONE = ("image_size", "train_way", "train_shot", "train_query", "test_way", "test_shot", "test_query",
                "episodes", "meta_batch", "lr_step", "val_every", "val_episodes", "test_episodes", "workers")
AT_LEAST_ZERO = ("seed", "test_seed")
NESTED = ("learner", "backbone_args")

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


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-4`` as a float as YAML 1.2 does (YAML 1.1 wants ``1.0e-4``)."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:(?:[0-9][0-9_]*)(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


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
        checked[name] = value
    return checked


def _check_name(registry: Registry, name: str, where: str) -> None:
    if name not in registry:
        raise FewzeroError(f"unknown {registry.kind} {name!r}{where}: choose one of {', '.join(registry.available())}")
    registry.get(name)


def _check_numbers(config: RunConfig, at: Where) -> None:
    for key in AT_LEAST_ONE:
        if getattr(config, key) < 1:
            raise FewzeroError(f"config key {key!r}{at(key)} must be >= 1, got {getattr(config, key)}")
    for key in AT_LEAST_ZERO:
        if getattr(config, key) < 0:
            raise FewzeroError(f"config key {key!r}{at(key)} must be >= 0, got {getattr(config, key)}")
    for key, low, strict in (("lr", 0.0, True), ("lr_gamma", 0.0, True), ("weight_decay", 0.0, False),
                             ("max_minutes", 0.0, True)):
        value = getattr(config, key)
        if value is None:
            continue
        if not math.isfinite(value) or (value <= low if strict else value < low):
            hint = " (or null for no time limit)" if key == "max_minutes" else ""
            raise FewzeroError(f"config key {key!r}{at(key)} must be a finite number {'>' if strict else '>='} "
                               f"{low:g}{hint}, got {value}")


def _check_consistency(config: RunConfig, at: Where) -> None:
    if config.val_every % config.meta_batch:
        raise FewzeroError(f"val_every ({config.val_every}){at('val_every')} must be a multiple of meta_batch "
                           f"({config.meta_batch}){at('meta_batch')} so that checkpoints fall between optimizer steps")
    if config.meta_batch % config.workers or config.episodes % config.workers:
        raise FewzeroError(f"meta_batch ({config.meta_batch}){at('meta_batch')} and episodes ({config.episodes})"
                           f"{at('episodes')} must be multiples of workers ({config.workers}){at('workers')} so "
                           f"that every worker does the same share")
    if config.workers > 1 and config.device != "cpu":
        raise FewzeroError(f"workers={config.workers}{at('workers')} runs CPU processes; with device "
                           f"{config.device!r}{at('device')} set workers to 1")
    if config.precision not in PRECISIONS:
        raise FewzeroError(f"config key 'precision'{at('precision')} must be one of {', '.join(PRECISIONS)}, "
                           f"got {config.precision!r}")


def _locator(values: dict[str, Any], where: str, origins: dict[str, str] | None) -> Where:
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


def validate(values: dict[str, Any], where: str = "", origins: dict[str, str] | None = None) -> RunConfig:
    """Build a ``RunConfig`` from a plain dict, rejecting unknown keys, wrong types, bad numbers and unknown names.

    Args:
        values: config keys and values.
        where: where the values came from, for messages (``" in run.yaml"``, ``" of checkpoint best.pt"``).
        origins: key (or ``"learner.<name>"``) -> what set it, e.g. ``{"lr": "--lr"}``; such keys are reported
            as ``(from --lr)`` instead of ``where``.
    """
    if not isinstance(values, dict):
        raise FewzeroError(f"config{where} must be a mapping of keys to values")
    at = _locator(values, where, origins)
    checked = {}
    for key, value in values.items():
        if key not in _HINTS:
            raise FewzeroError(f"unknown config key {key!r}{at(key)}: valid keys are {', '.join(FIELDS)}")
        checked[key] = _check_type(key, value, _HINTS[key], at(key))
    config = RunConfig(**checked)
    _check_name(LEARNERS, config.method, at("method"))
    _check_name(BACKBONES, config.backbone, at("backbone"))
    _check_name(DATASETS, config.dataset, at("dataset"))
    config.learner = _check_keyword_args("learner", config.learner, LEARNERS.parameters(config.method), at)
    config.backbone_args = _check_keyword_args("backbone_args", config.backbone_args,
                                               BACKBONES.parameters(config.backbone), at)
    _check_numbers(config, at)
    check_device(config.device, require_available=False, where=at("device"))
    _check_consistency(config, at)
    return config


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file (an empty file is an empty mapping)."""
    path = Path(path)
    if path.is_dir():
        raise FewzeroError(f"config file {path} is a directory: pass a .yaml file")
    try:
        values = yaml.load(path.read_text(encoding="utf-8"), Loader=ConfigLoader)
    except FileNotFoundError:
        raise FewzeroError(f"config file {path} does not exist: check the path") from None
    except UnicodeDecodeError:
        raise FewzeroError(f"config file {path} is not UTF-8 text: save it as UTF-8 YAML") from None
    except OSError as exc:
        raise FewzeroError(f"config file {path} cannot be read ({exc.strerror or exc}): check the path") from None
    except yaml.YAMLError as exc:
        raise FewzeroError(f"config file {path} is not valid YAML ({str(exc).splitlines()[0]}): fix it") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise FewzeroError(f"config file {path} must hold a mapping of keys to values (key: value lines), "
                           f"not a {type(values).__name__}")
    return values


def default_config_path(method: str, dataset: str) -> Path:
    return CONFIG_DIR / f"{method}_{dataset}.yaml"


def parse_override(text: str) -> tuple[str, Any]:
    """``"key=value"`` (value parsed as YAML; ``learner.distance=cosine`` sets a nested key)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise FewzeroError(f"--set expects key=value, got {text!r}")
    if not value.strip():
        raise FewzeroError(f"--set {text} has no value: give one (--set {key.strip()}=VALUE), or drop it")
    try:
        return key.strip(), yaml.load(value, Loader=ConfigLoader)
    except yaml.YAMLError:
        return key.strip(), value


def command_line_overrides(set_texts: Iterable[str], flags: dict[str, tuple[str, Any]]
                           ) -> tuple[dict[str, Any], dict[str, str]]:
    """``--set`` texts and flag values -> ``(overrides, origins)`` for ``load_config``.

    Args:
        set_texts: the ``--set key=value`` texts, in order.
        flags: flag -> (config key, value), e.g. ``{"--lr": ("lr", args.lr)}``; a value of None (flag not given)
            is skipped, and a flag given wins over ``--set`` of the same key.
    """
    overrides, origins = {}, {}
    for text in set_texts:
        key, value = parse_override(text)
        overrides[key], origins[key] = value, f"--set {text.strip()}"
    for flag, (key, value) in flags.items():
        if value is not None:
            overrides[key], origins[key] = value, flag
    return overrides, origins


def load_config(method: str | None = None, dataset: str | None = None, path: str | Path | None = None,
                overrides: dict[str, Any] | None = None, origins: dict[str, str] | None = None) -> RunConfig:
    """Defaults (dataclass) <- ``path`` or ``configs/<method>_<dataset>.yaml`` <- ``overrides`` (None = unset).

    ``origins`` names what set each override (``{"lr": "--lr", "seed": "--set seed=3"}``) for error messages;
    overrides without one are reported as coming from the overrides, never from the YAML file. An override of None
    is skipped (a flag left unset) unless ``origins`` names it (``--set max_minutes=null`` sets None).
    """
    values: dict[str, Any] = {}
    where = ""
    if method is not None:
        LEARNERS.get(method)
    if dataset is not None:
        DATASETS.get(dataset)
    if path is None and method is not None:
        dataset = dataset or RunConfig.dataset
        if default_config_path(method, dataset).is_file():
            path = default_config_path(method, dataset)
    if path is not None:
        values = read_yaml(path)
        where = f" in {path}"
    values = {**values, **({"method": method} if method else {}), **({"dataset": dataset} if dataset else {})}
    origins = dict(origins or {})
    for key, value in (overrides or {}).items():
        if value is None and key not in origins:  # None means "not given", unless someone set it (--set key=null)
            continue
        origins.setdefault(key, "overrides")
        head, _, tail = key.partition(".")
        if tail:
            if head not in NESTED:
                raise FewzeroError(f"unknown config key {key!r} (from {origins[key]}): only learner.* and "
                                   f"backbone_args.* are nested")
            nested = values.get(head, {})
            values[head] = {**(nested if isinstance(nested, dict) else {}), tail: value}
        else:
            values[key] = value
    return validate(values, where, origins)
