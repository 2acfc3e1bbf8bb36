"""What a domain adaptation run is made of, before any training: its settings (checked with one-line errors),
its data (source train/val, target images; the target test set only for the final report), and its model
(a backbone, optionally from a pretrained checkpoint, under an adaptation method). ``load_adapted`` reads back the
model a ``fewzero adapt`` run kept."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fewzero.adapt.selection import CRITERIA
from fewzero.checkpoint import load_checkpoint
from fewzero.errors import FewzeroError
from fewzero.registry import ADAPTERS, BACKBONES


@dataclass
class AdaptSettings:
    """One adaptation run. ``weights=None`` tries the method's own grid; ``checkpoints`` candidates per weight are
    kept at evenly spaced steps. SGD with momentum and the annealed learning rate of Ganin et al. 2016."""

    method: str
    source: str
    target: str
    seed: int = 0
    backbone: str = "lenet"
    steps: int = 1500  # the benchmark's: the plain command reproduces paper_results/domain_adaptation.md
    batch_size: int = 32  # per domain
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    weights: tuple[float, ...] | None = None
    checkpoints: int = 5
    select: str = "dev"
    image_size: int = 28
    channels: int = 3
    split_seed: int = 0
    init: str | None = None
    backbone_args: dict[str, Any] = field(default_factory=dict)
    method_args: dict[str, Any] = field(default_factory=dict)


def check_settings(s: AdaptSettings) -> None:
    """Refuse bad settings with one sentence each, before any work."""
    if s.method not in ADAPTERS:
        raise FewzeroError(f"unknown adaptation method {s.method!r}: choose one of {', '.join(ADAPTERS.available())}")
    if s.backbone not in BACKBONES:
        raise FewzeroError(f"unknown backbone {s.backbone!r}: choose one of {', '.join(BACKBONES.available())}")
    if os.path.normpath(str(s.source)) == os.path.normpath(str(s.target)):
        raise FewzeroError(f"--source and --target are both {s.source!r}: adaptation needs two different domains")
    if s.select not in CRITERIA:
        raise FewzeroError(f"unknown selection criterion {s.select!r}: choose one of {', '.join(CRITERIA)}")
    for name in ("steps", "batch_size", "checkpoints"):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise FewzeroError(f"{name} must be a positive integer, got {value!r}")
    if s.batch_size < 2:
        raise FewzeroError("batch_size must be at least 2 (alignment losses compare samples)")
    if s.checkpoints > s.steps:
        raise FewzeroError(f"checkpoints ({s.checkpoints}) cannot exceed steps ({s.steps})")
    if not (s.lr > 0 and math.isfinite(s.lr)):
        raise FewzeroError(f"lr must be a positive number, got {s.lr!r}")
    if s.weights is not None and (not s.weights or any(not (w >= 0 and math.isfinite(w)) for w in s.weights)):
        raise FewzeroError(f"weights must be non-negative numbers, got {s.weights!r}")
    if s.init is not None and not Path(s.init).is_file():
        raise FewzeroError(f"--init {s.init} is not a file: pass a checkpoint written by fewzero pretrain or train")


def check_method_args(s: AdaptSettings, n_classes: int, example: torch.Tensor) -> None:
    """Build the method's model once, so an unknown or bad method argument (``--set``) is one sentence before any
    work: the keys the method accepts, or the method's own complaint about a value. The build also loads ``--init``,
    so a checkpoint of another backbone is refused here too (``build_backbone``'s FewzeroError)."""
    import inspect

    method = ADAPTERS.get(s.method)
    accepted = sorted({name for cls in method.__mro__ if "__init__" in vars(cls)
                       for name, p in inspect.signature(cls.__init__).parameters.items()
                       if p.kind is p.KEYWORD_ONLY} - {"backbone", "feature_dim", "n_classes", "weight"})
    unknown = sorted(set(s.method_args) - set(accepted))
    if unknown:
        raise FewzeroError(f"{s.method} has no argument {', '.join(unknown)}: it takes "
                           f"{', '.join(accepted) or 'none'} (--set KEY=VALUE)")
    try:
        build_adapter(s, n_classes, 0.0, example)
    except (TypeError, ValueError) as exc:
        given = " ".join(f"{k}={v!r}" for k, v in s.method_args.items())
        raise FewzeroError(f"{s.method} refuses the arguments {given}: {exc}") from None


def _tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    batch = dataset.__getitems__(list(range(len(dataset))))
    return batch.x.contiguous(), batch.y.clone()


def load_data(s: AdaptSettings, data_root: str | None = None) -> dict[str, Any]:
    """The run's training inputs: source train/val (x, y), target train images only, class names."""
    from fewzero.data.domains import load_domain

    common = {"seed": s.split_seed, "image_size": s.image_size, "channels": s.channels, "data_root": data_root,
              "stratify": False}  # a split that reads no label (the target's are unknown): see load_domain
    source_train = load_domain(s.source, subset="train", **common)
    names = list(source_train.class_names)
    source_val = load_domain(s.source, subset="val", **common, class_names=names)
    target_train = load_domain(s.target, subset="train", **common, class_names=names)
    data = {"source_train": _tensors(source_train), "source_val": _tensors(source_val),
            "target_images": _tensors(target_train)[0], "class_names": names}
    if ADAPTERS.get(s.method).uses_target_labels:  # the oracle: target labels are its training data
        data["source_train"] = _tensors(target_train)
        data["source_val"] = _tensors(load_domain(s.target, subset="val", **common, class_names=names))
    return data


def load_target_test(s: AdaptSettings, class_names: list[str], data_root: str | None = None) -> dict[str, Any]:
    """The final evaluation's data: target test (x, y), source test (x, y), and the unlabelled images the A-distances
    compare (source val + test against target train + test: more rows than the test sets alone, no labels)."""
    from fewzero.data.domains import load_domain

    common = {"seed": s.split_seed, "image_size": s.image_size, "channels": s.channels, "data_root": data_root,
              "class_names": class_names, "stratify": False}
    source = {subset: _tensors(load_domain(s.source, subset=subset, **common)) for subset in ("val", "test")}
    target = {subset: _tensors(load_domain(s.target, subset=subset, **common)) for subset in ("train", "test")}
    return {"target_test": target["test"], "source_test": source["test"],
            "source_images": torch.cat([source["val"][0], source["test"][0]]),
            "target_images": torch.cat([target["train"][0], target["test"][0]])}


def build_backbone(s: AdaptSettings) -> torch.nn.Module:
    """The backbone, initialised from ``s.init`` when given (a 1-channel first convolution is widened to 3 channels
    by repeating its weights / 3, which gives the same output on a grey image repeated over three channels)."""
    backbone = BACKBONES.create(s.backbone, in_channels=s.channels, **s.backbone_args)
    if s.init is None:
        return backbone
    payload = load_checkpoint(s.init)
    saved = (payload.get("config") or {}).get("backbone")
    state = payload.get("model") or payload.get("backbone")
    if not isinstance(state, dict) or not saved:
        raise FewzeroError(f"--init {s.init} holds no backbone (name and weights): pass a checkpoint written by "
                           f"fewzero pretrain or train")
    if saved != s.backbone:
        raise FewzeroError(f"--init {s.init} holds a {saved} backbone, not {s.backbone}: pass --backbone {saved}")
    state = {k.removeprefix("backbone."): v for k, v in state.items()}
    own = backbone.state_dict()
    for name, value in state.items():
        if name in own and value.ndim == 4 and own[name].ndim == 4 and value.shape[1] == 1 \
                and own[name].shape[1] == s.channels != 1 and value.shape[0] == own[name].shape[0]:
            state[name] = value.repeat(1, s.channels, 1, 1) / s.channels
    try:
        backbone.load_state_dict(state)
    except RuntimeError as exc:
        raise FewzeroError(f"--init {s.init} does not fit a {s.backbone} backbone "
                           f"({str(exc).splitlines()[0]}): pass a checkpoint of the same backbone") from None
    return backbone


def build_adapter(s: AdaptSettings, n_classes: int, weight: float, example: torch.Tensor) -> torch.nn.Module:
    """The method's model on a fresh backbone; ``example`` (B, *item) is any input batch (sizes the head)."""
    backbone = build_backbone(s)
    with torch.no_grad():
        feature_dim = backbone.eval()(example[:2]).flatten(1).shape[1]
    return ADAPTERS.create(s.method, backbone=backbone, feature_dim=feature_dim, n_classes=n_classes, weight=weight,
                           **s.method_args)


ADAPTED_KIND = "fewzero-adapted"


def load_adapted(path: str | os.PathLike) -> torch.nn.Module:
    """The model a ``fewzero adapt`` run kept (its ``model.pt``), in eval mode: images -> class logits."""
    payload = load_checkpoint(path)
    if payload.get("kind") != ADAPTED_KIND:
        raise FewzeroError(f"{path} is not a model written by fewzero adapt (kind {payload.get('kind')!r})")
    s = AdaptSettings(**{**payload["settings"], "weights": None, "init": None})
    example = torch.zeros(2, s.channels, s.image_size, s.image_size)
    model = build_adapter(s, int(payload["n_classes"]), 0.0, example)
    model.load_state_dict(payload["model"])
    return model.eval()
