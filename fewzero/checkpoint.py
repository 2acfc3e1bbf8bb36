"""Checkpoints: written atomically, read with ``weights_only=True`` (nothing loaded can run code)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fewzero.config import RunConfig, validate
from fewzero.errors import FewzeroError
from fewzero.learners.base import Learner
from fewzero.registry import BACKBONES, LEARNERS

FORMAT = "fewzero-checkpoint-v1"


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename: a killed run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save({"format": FORMAT, **payload}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; a missing, truncated or foreign file is a FewzeroError."""
    path = Path(path)
    if not path.is_file():
        raise FewzeroError(f"checkpoint {path} does not exist: check --checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files; all mean the same to the user
        raise FewzeroError(f"checkpoint {path} is unreadable or truncated ({type(exc).__name__}): "
                           f"train again or point --checkpoint at a good file") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "model" not in payload:
        raise FewzeroError(f"{path} is not a fewzero checkpoint: point --checkpoint at a file written by fewzero train")
    return payload


def build_learner(config: RunConfig, in_channels: int = 1) -> Learner:
    """A fresh learner (with its backbone) as the config describes."""
    backbone = BACKBONES.create(config.backbone, in_channels=in_channels, **config.backbone_args)
    return LEARNERS.create(config.method, backbone=backbone, **config.learner)


def learner_from_checkpoint(path: str | os.PathLike, learner_overrides: dict[str, Any] | None = None
                            ) -> tuple[Learner, RunConfig, dict[str, Any]]:
    """(learner with the saved weights, its config, the saved metrics).

    ``learner_overrides`` replace learner settings saved with the model (e.g. ``{"test_inner_steps": 5}``);
    one that changes the shape of the weights is refused.
    """
    payload = load_checkpoint(path)
    saved = payload["config"]
    if learner_overrides:
        saved = {**saved, "learner": {**saved.get("learner", {}), **learner_overrides}}
    config = validate(saved, f" of checkpoint {path}")
    learner = build_learner(config, in_channels=int(payload.get("in_channels", 1)))
    try:
        learner.load_state_dict(payload["model"])
    except RuntimeError as exc:
        if learner_overrides:
            raise FewzeroError(f"learner settings {sorted(learner_overrides)} change the shape of the model in "
                               f"{path}: drop them or train a new model") from None
        raise FewzeroError(f"checkpoint {path} does not match its config ({str(exc).splitlines()[0]}): "
                           f"train again") from None
    return learner, config, payload.get("metrics", {})
