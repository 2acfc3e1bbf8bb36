"""Run configuration: YAML defaults per (method, dataset), validated into a dataclass; flags override them.

Defaults come from ``configs/<method>_<dataset>.yaml`` when it exists (top-level ``configs/``, shipped in the wheel),
else from the dataclass. Unknown keys and values of the wrong type are errors. Every error names where the bad value
came from: the YAML file, a flag or ``--set`` (``origins`` of ``load_config``), or a checkpoint. The checks
themselves live in ``fewzero.config_checks``; ``check_device`` is re-exported here.
"""
from __future__ import annotations

import re
import typing
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from fewzero.config_checks import check_config, check_device, check_types, locator
from fewzero.errors import FewzeroError
from fewzero.paths import config_dir
from fewzero.registry import DATASETS, LEARNERS

__all__ = ["CONFIG_DIR", "FIELDS", "NESTED", "ConfigLoader", "RunConfig", "check_device", "command_line_overrides",
           "default_config_path", "load_config", "parse_override", "read_yaml", "validate", "ZERO_SHOT_CONFIG_KEYS"]

CONFIG_DIR = config_dir()
# the keys of a zero-shot config (fewzero tune's best.yaml, an ensemble of zero-shot members); ``data`` holds options
# of the dataset's loader (e.g. ``heads`` of the CUB-50 feature backbone)
ZERO_SHOT_CONFIG_KEYS = ("method", "dataset", "semantics", "seed", "learner", "data")


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
    lr_schedule: str = "step"  # step (x lr_gamma every lr_step episodes) or cosine (from lr down to lr_min)
    lr_min: float = 0.0  # the cosine schedule's final learning rate
    weight_decay: float = 0.0
    val_every: int = 500
    checkpoint_every: typing.Optional[int] = None  # episodes between last.pt writes besides each validation's
    val_episodes: int = 200
    test_episodes: int = 1000
    seed: int = 0
    test_seed: int = 0
    max_minutes: typing.Optional[float] = None
    device: str = "cpu"
    dist_backend: str = "auto"  # under torchrun: auto (NCCL on CUDA, gloo on CPU), gloo or nccl
    precision: str = "fp32"  # training arithmetic: fp32, bf16 autocast, or auto (fewzero.precision)
    epochs: int = 20  # fewzero pretrain: passes over the training images
    batch_size: int = 128  # fewzero pretrain: images per mini-batch
    objective: str = "linear"  # fewzero pretrain: the loss (fewzero.transfer.objectives.OBJECTIVES)
    augment_shift: int = 0  # fewzero pretrain: move each training image by up to this many pixels (0: off)
    learner: dict = field(default_factory=dict)
    backbone_args: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_HINTS = typing.get_type_hints(RunConfig)
FIELDS = [f.name for f in fields(RunConfig)]
NESTED = ("learner", "backbone_args")


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-4`` as a float as YAML 1.2 does (YAML 1.1 wants ``1.0e-4``)."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:(?:[0-9][0-9_]*)(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


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
    at = locator(values, where, origins)
    if "workers" in values:
        raise FewzeroError(f"config key 'workers'{at('workers')} is gone: drop it, and start processes with "
                           f"`fewzero train --nproc N` or `torchrun --nproc-per-node N -m fewzero train ...`")
    config = RunConfig(**check_types(values, _HINTS, at))
    check_config(config, at)
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


def zero_shot_config_path(method: str, dataset: str, given: str | None = None) -> str | None:
    """The config a zero-shot command reads: ``given`` (``--config``), else the shipped
    ``configs/<method>_<dataset>.yaml`` where there is one, else None."""
    if given:
        return given
    shipped = default_config_path(method, dataset)
    return str(shipped) if shipped.is_file() else None


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
