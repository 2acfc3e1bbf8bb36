"""Run configuration: YAML defaults per (method, dataset), validated into a dataclass; flags override them.

Defaults come from ``configs/<method>_<dataset>.yaml`` when it exists (``fewzero/configs`` inside the package),
else from the dataclass. Unknown keys and values of the wrong type are errors.
"""
from __future__ import annotations

import inspect
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from fewzero.errors import FewzeroError
from fewzero.registry import BACKBONES, DATASETS, LEARNERS

CONFIG_DIR = Path(__file__).parent / "configs"
PRECISIONS = ("fp32", "bf16")


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


def _check_type(key: str, value: Any, expected: Any, where: str) -> Any:
    allowed = typing.get_args(expected) or (expected,)
    if value is None and type(None) in allowed:
        return None
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    for kind in allowed:
        if kind is not type(None) and isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
    names = "/".join(k.__name__ for k in allowed if k is not type(None))
    raise FewzeroError(f"config key {key!r}{where} must be {names}, got {value!r}")


def _check_keyword_args(key: str, values: dict, factory_params: dict[str, inspect.Parameter], where: str) -> None:
    for name, value in values.items():
        param = factory_params.get(name)
        if param is None or name == "backbone":
            valid = ", ".join(p for p in factory_params if p != "backbone") or "none"
            raise FewzeroError(f"unknown key {key}.{name}{where}: valid keys are {valid}")
        if param.default not in (None, inspect.Parameter.empty):
            _check_type(f"{key}.{name}", value, type(param.default), where)


def validate(values: dict[str, Any], where: str = "") -> RunConfig:
    """Build a ``RunConfig`` from a plain dict, rejecting unknown keys, wrong types and unknown names."""
    if not isinstance(values, dict):
        raise FewzeroError(f"config{where} must be a mapping of keys to values")
    checked = {}
    for key, value in values.items():
        if key not in _HINTS:
            raise FewzeroError(f"unknown config key {key!r}{where}: valid keys are {', '.join(FIELDS)}")
        checked[key] = _check_type(key, value, _HINTS[key], where)
    config = RunConfig(**checked)
    LEARNERS.get(config.method), BACKBONES.get(config.backbone), DATASETS.get(config.dataset)
    _check_keyword_args("learner", config.learner, LEARNERS.parameters(config.method), where)
    _check_keyword_args("backbone_args", config.backbone_args, BACKBONES.parameters(config.backbone), where)
    for key in ("image_size", "train_way", "train_shot", "test_way", "test_shot", "episodes", "meta_batch", "lr_step",
                "val_every", "val_episodes", "test_episodes", "workers"):
        if getattr(config, key) < 1:
            raise FewzeroError(f"config key {key!r}{where} must be >= 1, got {getattr(config, key)}")
    if config.val_every % config.meta_batch:
        raise FewzeroError(f"val_every ({config.val_every}){where} must be a multiple of meta_batch "
                           f"({config.meta_batch}) so that checkpoints fall between optimizer steps")
    if config.meta_batch % config.workers or config.episodes % config.workers:
        raise FewzeroError(f"meta_batch ({config.meta_batch}) and episodes ({config.episodes}){where} must be "
                           f"multiples of workers ({config.workers}) so that every worker does the same share")
    if config.workers > 1 and config.device != "cpu":
        raise FewzeroError(f"workers={config.workers}{where} runs CPU processes; with device {config.device!r} "
                           f"set workers to 1")
    if config.precision not in PRECISIONS:
        raise FewzeroError(f"config key 'precision'{where} must be one of {', '.join(PRECISIONS)}, "
                           f"got {config.precision!r}")
    if config.lr <= 0:
        raise FewzeroError(f"config key 'lr'{where} must be > 0, got {config.lr}")
    return config


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FewzeroError(f"config file {path} does not exist: check the path") from None
    except yaml.YAMLError as exc:
        raise FewzeroError(f"config file {path} is not valid YAML ({str(exc).splitlines()[0]}): fix it") from None
    return values or {}


def default_config_path(method: str, dataset: str) -> Path:
    return CONFIG_DIR / f"{method}_{dataset}.yaml"


def parse_override(text: str) -> tuple[str, Any]:
    """``"key=value"`` (value parsed as YAML; ``learner.distance=cosine`` sets a nested key)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise FewzeroError(f"--set expects key=value, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        return key.strip(), value


def load_config(method: str | None = None, dataset: str | None = None, path: str | Path | None = None,
                overrides: dict[str, Any] | None = None) -> RunConfig:
    """Defaults (dataclass) <- ``path`` or ``configs/<method>_<dataset>.yaml`` <- ``overrides`` (None = unset)."""
    values: dict[str, Any] = {}
    where = ""
    if path is None and method is not None:
        LEARNERS.get(method)
        dataset = dataset or RunConfig.dataset
        DATASETS.get(dataset)
        if default_config_path(method, dataset).is_file():
            path = default_config_path(method, dataset)
    if path is not None:
        values = read_yaml(path)
        where = f" in {path}"
        if not isinstance(values, dict):
            raise FewzeroError(f"config file {path} must hold a mapping of keys to values")
    values = {**values, **({"method": method} if method else {}), **({"dataset": dataset} if dataset else {})}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        head, _, tail = key.partition(".")
        if tail:
            if head not in ("learner", "backbone_args"):
                raise FewzeroError(f"unknown config key {key!r}: only learner.* and backbone_args.* are nested")
            values[head] = {**values.get(head, {}), tail: value}
        else:
            values[key] = value
    return validate(values, where)
