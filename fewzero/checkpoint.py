"""Checkpoints: written atomically, read with ``weights_only=True`` (nothing loaded can run code)."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from fewzero.atomic import atomic_path
from fewzero.config import RunConfig, validate
from fewzero.errors import FewzeroError
from fewzero.learners.base import Learner
from fewzero.registry import BACKBONES, LEARNERS

FORMAT = "fewzero-checkpoint-v1"
PRETRAINED_KIND = "pretrained-backbone"  # written by fewzero pretrain: a backbone that every transfer learner starts from


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename: a killed run never leaves half a file."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)
    return Path(path)


def _check_file(path: Path) -> None:
    if path.is_dir():
        inside = next((path / name for name in ("best.pt", "last.pt") if (path / name).is_file()), None)
        hint = f"pass {inside}" if inside else "pass the .pt file written by fewzero train"
        raise FewzeroError(f"checkpoint {path} is a directory, not a file: {hint}")
    if not path.is_file():
        raise FewzeroError(f"checkpoint {path} does not exist: check --checkpoint")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; a missing, truncated or foreign file is a FewzeroError.

    Only tensors and plain values are read (``weights_only=True``): a file holding other pickled objects, which
    could run code when loaded, is refused.
    """
    path = Path(path)
    _check_file(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _carries_code(exc):
            raise FewzeroError(f"checkpoint {path} holds Python objects other than tensors and plain values "
                               f"(loading them could run code), so it is refused: use a checkpoint written by "
                               f"fewzero train") from None
        raise _unreadable(path, exc) from None
    except Exception as exc:  # torch raises many types for damaged files; all mean the same to the user
        raise _unreadable(path, exc) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or not isinstance(payload.get("model"), dict):
        raise FewzeroError(f"{path} is not a fewzero checkpoint: point --checkpoint at a file written by fewzero train")
    return payload


def _carries_code(exc: pickle.UnpicklingError) -> bool:
    """Whether the weights-only unpickler refused a global (a class or function to call), not damaged bytes."""
    text = str(exc).lower()
    return "weights only" in text and any(word in text for word in ("global", "allowlisted"))


def _unreadable(path: Path, exc: Exception) -> FewzeroError:
    return FewzeroError(f"checkpoint {path} is unreadable or truncated ({type(exc).__name__}): "
                        f"train again or point --checkpoint at a good file")


def saved_config(payload: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """The config dict a checkpoint was trained with (a FewzeroError if it has none)."""
    config = payload.get("config")
    if not isinstance(config, dict):
        raise FewzeroError(f"checkpoint {path} has no training config (was it written by fewzero train?): "
                           f"train again or point --checkpoint at a file written by fewzero train")
    # runs before torchrun recorded their worker processes in the config; the processes do not change the model
    return {k: v for k, v in config.items() if k != "workers"}


def build_learner(config: RunConfig, in_channels: int = 1) -> Learner:
    """A fresh learner (with its backbone) as the config describes."""
    try:
        backbone = BACKBONES.create(config.backbone, in_channels=in_channels, **config.backbone_args)
        return LEARNERS.create(config.method, backbone=backbone, **config.learner)
    except (TypeError, ValueError) as exc:
        raise FewzeroError(f"cannot build {config.method} with backbone {config.backbone} "
                           f"(learner {config.learner}, backbone_args {config.backbone_args}): {exc}; "
                           f"fix the learner / backbone_args settings") from None


def _check_kind(saved: dict[str, Any], path: str | os.PathLike, method: str | None, dataset: str | None) -> None:
    """The saved config's method and dataset are the expected ones (checked before anything else is)."""
    saved_method, saved_dataset = saved.get("method", RunConfig.method), saved.get("dataset", RunConfig.dataset)
    if method is not None and saved_method != method:
        raise FewzeroError(f"{path} holds a {saved_method} model, not {method}: pass --method {saved_method} "
                           f"or another --checkpoint")
    if dataset is not None and saved_dataset != dataset:
        raise FewzeroError(f"{path} holds a model trained on {saved_dataset}, not {dataset}: pass --dataset "
                           f"{saved_dataset} or another --checkpoint")


def learner_from_checkpoint(path: str | os.PathLike, learner_overrides: dict[str, Any] | None = None, *,
                            method: str | None = None, dataset: str | None = None,
                            learner_settings: dict[str, Any] | None = None, backbone: str | None = None,
                            way: int | None = None, shot: int | None = None
                            ) -> tuple[Learner, RunConfig, dict[str, Any]]:
    """(learner with the saved weights, its config, the saved metrics).

    ``learner_overrides`` replace learner settings saved with the model (e.g. ``{"test_inner_steps": 5}``);
    one that changes the shape of the weights is refused. Overriding a setting ``S`` also drops a saved per-shot
    ``S_by_shot`` (unless that is overridden too): ``{"test_inner_lr": 0.4}`` adapts every test task with 0.4, even
    where the packaged model stores a step size chosen per shot count (``test_inner_lr_by_shot``).
    ``method`` / ``dataset``, when given, must be the ones the model was trained with.

    A pretrained backbone (written by ``fewzero pretrain``) serves every learner that starts from one
    (``starts_from_pretrained``: baseline, baselinepp, simpleshot, logreg, finetune): ``method`` names the learner,
    built with ``learner_settings`` updated by ``learner_overrides``; ``backbone``, when given, must be the saved one.
    Given the task shape (``way``, ``shot``), the settings the backbone stores as chosen on validation episodes for
    that learner and shape (``task_settings``, e.g. the packaged backbone's) fill in every key neither sets.
    """
    payload = load_checkpoint(path)
    saved = saved_config(payload, path)
    if payload.get("kind") == PRETRAINED_KIND:
        stored = task_settings(payload, path, method, way, shot) if method is not None else {}
        return _learner_from_pretrained(path, payload, saved, method, dataset, backbone,
                                        {**stored, **(learner_settings or {}), **(learner_overrides or {})})
    _check_kind(saved, path, method, dataset)
    if learner_overrides:
        saved = {**saved, "learner": _overridden(saved.get("learner", {}), learner_overrides)}
    config = validate(saved, f" of checkpoint {path}",
                      {f"learner.{key}": "the command line" for key in learner_overrides or {}})
    try:
        in_channels = int(payload.get("in_channels", 1))
    except (TypeError, ValueError):
        raise FewzeroError(f"checkpoint {path} has a bad in_channels {payload.get('in_channels')!r}: "
                           f"train again") from None
    learner = build_learner(config, in_channels=in_channels)
    try:
        learner.load_state_dict(payload["model"])
    except (RuntimeError, TypeError, ValueError) as exc:
        if learner_overrides:
            raise FewzeroError(f"learner settings {sorted(learner_overrides)} change the shape of the model in "
                               f"{path}: drop them or train a new model") from None
        raise FewzeroError(f"checkpoint {path} does not match its config ({str(exc).splitlines()[0]}): "
                           f"train again") from None
    return learner, config, payload.get("metrics", {})


def _overridden(settings: Any, overrides: dict[str, Any]) -> Any:
    """Saved learner ``settings`` updated by ``overrides``; overriding ``S`` drops a saved ``S_by_shot``."""
    if not isinstance(settings, dict):
        return settings  # validate() says what is wrong with it
    dropped = {f"{key}_by_shot" for key in overrides} - set(overrides)
    return {**{k: v for k, v in settings.items() if k not in dropped}, **overrides}


def _learner_from_pretrained(path, payload: dict[str, Any], saved: dict[str, Any], method: str | None,
                             dataset: str | None, backbone: str | None, settings: dict[str, Any]
                             ) -> tuple[Learner, RunConfig, dict[str, Any]]:
    if method is None:
        raise FewzeroError(f"{path} holds a pretrained backbone: name the learner to build on it (method=...)")
    if not getattr(LEARNERS.get(method), "starts_from_pretrained", False):
        starters = ", ".join(name for name in LEARNERS.available()
                             if getattr(LEARNERS.get(name), "starts_from_pretrained", False))
        raise FewzeroError(f"{path} holds a pretrained backbone, which {method} does not start from: pass a "
                           f"checkpoint written by fewzero train for {method}, or use one of {starters}")
    _check_kind({**saved, "method": method}, path, method, dataset)
    saved_backbone = saved.get("backbone", RunConfig.backbone)
    if backbone is not None and backbone != saved_backbone:
        raise FewzeroError(f"{path} holds a pretrained {saved_backbone} backbone, not {backbone}: pretrain a "
                           f"{backbone} (fewzero pretrain --backbone {backbone}) or drop the backbone setting")
    config = validate({**saved, "method": method, "learner": settings}, f" of checkpoint {path}",
                      {f"learner.{key}": "the learner settings" for key in settings})
    learner = build_learner(config, in_channels=int(payload.get("in_channels", 1)))
    try:
        learner.backbone.load_state_dict(payload["model"])
    except (RuntimeError, TypeError, ValueError) as exc:
        raise FewzeroError(f"checkpoint {path} does not match its {saved_backbone} backbone "
                           f"({str(exc).splitlines()[0]}): pretrain again") from None
    statistics = payload.get("statistics")
    if hasattr(learner, "use_base_statistics"):
        if not isinstance(statistics, dict) or not isinstance(statistics.get("base_mean"), torch.Tensor):
            raise FewzeroError(f"checkpoint {path} has no base-class statistics: pretrain again")
        learner.use_base_statistics(statistics)
    return learner, config, payload.get("metrics", {})


TASK_SETTINGS = "task_settings"  # in a pretrained backbone: {learner: {"5w1s": {setting: value}}}


def task_key(way: int, shot: int) -> str:
    """The name of a task shape in ``task_settings`` and in the benchmark tables: ``5w1s``."""
    return f"{way}w{shot}s"


def task_settings(payload: dict[str, Any], path: str | os.PathLike, method: str, way: int | None,
                  shot: int | None) -> dict[str, Any]:
    """The learner settings a pretrained backbone stores for ``method`` on ``way``-way ``shot``-shot tasks (chosen on
    validation episodes by benchmarks/omniglot_transfer.py, stored by benchmarks/store_transfer_settings.py); ``{}``
    when it stores none for them."""
    stored = payload.get(TASK_SETTINGS, {})
    if way is None or shot is None or not stored:
        return {}
    chosen = stored.get(method, {}) if isinstance(stored, dict) else None
    if not isinstance(chosen, dict) or not all(isinstance(v, dict) for v in chosen.values()):
        raise FewzeroError(f"checkpoint {path} has malformed {TASK_SETTINGS} (expected learner -> task shape -> "
                           f"settings): pretrain again or store them again")
    return dict(chosen.get(task_key(way, shot), {}))
