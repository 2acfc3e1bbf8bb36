"""Run one unsupervised domain adaptation: train every trade-off weight, keep candidates, select without target
labels, then evaluate the selected model on the target's test images (the only place target labels are read).

    result = adapt(AdaptSettings(method="dann", source="mnist", target="uci_digits"), out="runs/dann")

Data: the source's ``train`` subset (labelled) trains, its ``val`` subset (labelled) scores the candidates; the
target's ``train`` subset gives unlabelled images; the target's ``test`` subset is the final report. The oracle
trains on the target's labelled ``train`` subset and keeps the epoch its target ``val`` accuracy picks.
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewzero.adapt.selection import CRITERIA, criteria, select
from fewzero.checkpoint import load_checkpoint
from fewzero.errors import FewzeroError
from fewzero.evaluate_adapt import DomainReport, evaluate_domain, predict, proxy_a_distance
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


@torch.no_grad()
def embed(model: torch.nn.Module, x: torch.Tensor, *, batch_size: int = 1000) -> np.ndarray:
    """The representation the classifier reads, (n, hidden), in eval mode."""
    model.eval()
    return torch.cat([model.embed(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).numpy()


def _score(model, data: dict, seed: int, oracle: bool) -> dict[str, float]:
    val_x, val_y = data["source_val"]
    correct = (predict(model, val_x) == val_y).numpy()
    if oracle:  # its "source" is the target: no shift to correct for
        return {"source_val": 100.0 * float(correct.mean())}
    return criteria(source_train=embed(model, data["source_train"][0]), target_train=embed(model, data["target_images"]),
                    source_val=embed(model, val_x), val_correct=correct, seed=seed)


def train_candidates(s: AdaptSettings, data: dict, *, progress: bool = True, log=None,
                     diverged: list | None = None) -> list[dict]:
    """Train one model per trade-off weight; every ``steps / checkpoints`` steps keep a candidate: its weight, step,
    state (a CPU copy) and criteria. Only source labels and target *images* are read.

    A weight whose loss stops being finite ends there (its earlier candidates stay) and is appended to ``diverged``
    as ``{"weight", "step"}``; if no candidate is left at all, that is an error."""
    from tqdm import tqdm

    diverged = [] if diverged is None else diverged
    method = ADAPTERS.get(s.method)
    oracle = method.uses_target_labels
    weights = (s.weights if s.weights is not None else method.weight_grid) if method.uses_target_images else (0.0,)
    keep_at = {round(s.steps * (i + 1) / s.checkpoints) for i in range(s.checkpoints)}
    (source_x, source_y), target_x = data["source_train"], data["target_images"]
    candidates: list[dict] = []
    bar = tqdm(total=len(weights) * s.steps, disable=not progress, dynamic_ncols=True,
               desc=f"{s.method} {s.source} -> {s.target}")
    for weight in weights:
        torch.manual_seed(s.seed)
        model = build_adapter(s, len(data["class_names"]), weight, source_x)
        optimizer = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
        order = torch.Generator().manual_seed(s.seed)
        source_batches = _batches(len(source_x), s.batch_size, order)
        target_batches = _batches(len(target_x), s.batch_size, order)
        for step in range(1, s.steps + 1):
            progress_now = (step - 1) / s.steps
            for group in optimizer.param_groups:
                group["lr"] = s.lr / (1.0 + 10.0 * progress_now) ** 0.75  # Ganin et al. 2016's annealing
            model.train()
            index = next(source_batches)
            loss, parts = model.loss(source_x[index], source_y[index],
                                     target_x[next(target_batches)] if model.uses_target_images else None,
                                     progress=progress_now)
            if not torch.isfinite(loss):  # this weight is dropped; the others still compete
                diverged.append({"weight": weight, "step": step})
                if log is not None:
                    log.record(step=step, weight=weight, diverged=True)
                bar.update(s.steps - step + 1)
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update(1)
            bar.set_postfix(weight=weight, **{k: f"{v:.3f}" for k, v in parts.items()}, refresh=False)
            if step in keep_at:
                scores = _score(model, data, s.seed, oracle)
                candidates.append({"weight": weight, "step": step, "criteria": scores, "order": len(candidates),
                                   "state": copy.deepcopy(model.state_dict())})
                if log is not None:
                    log.record(step=step, weight=weight, **parts, **{f"estimated_{k}": v for k, v in scores.items()})
    bar.close()
    if not candidates:
        tried = ", ".join(str(d["weight"]) for d in diverged)
        raise FewzeroError(f"{s.method} diverged for every trade-off weight ({tried}) before its first candidate: "
                           f"lower --lr (now {s.lr}) or the --weights")
    return candidates


def _batches(n: int, size: int, generator: torch.Generator):
    """Endless random batches of indices into ``n`` items (a fresh permutation each pass)."""
    while True:
        order = torch.randperm(n, generator=generator)
        for first in range(0, n - size + 1 if n >= size else 1, size):
            yield order[first:first + size]


@dataclass
class AdaptResult:
    settings: dict[str, Any]
    selected: dict[str, dict[str, Any]]  # criterion -> {weight, step, criteria, report}
    used: str  # the criterion whose model is "the" result
    a_distance: dict[str, float]
    candidates: list[dict[str, Any]]  # weight, step, criteria (no states)
    diverged: list[dict[str, Any]] = field(default_factory=list)  # weights whose training stopped: weight, step

    @property
    def report(self) -> DomainReport:
        return self.selected[self.used]["report"]

    def to_dict(self) -> dict[str, Any]:
        selected = {k: {**v, "report": v["report"].to_dict()} for k, v in self.selected.items()}
        return {**asdict(self), "selected": selected}


def adapt(s: AdaptSettings, *, data_root: str | None = None, progress: bool = True, log=None,
          keep: dict | None = None, data: dict | None = None, test: dict | None = None) -> AdaptResult:
    """Train, select (every criterion), evaluate each selected model on the target test set.

    ``data`` / ``test``: what ``load_data`` / ``load_target_test`` return, when the caller loaded them already
    (the CLI does, to refuse bad domains before it creates its folder). ``log``: a ``RunLog`` for the candidates'
    records. ``keep``, when given, receives the selected model and the test embeddings before/after for plotting.
    """
    check_settings(s)
    data = data if data is not None else load_data(s, data_root)
    diverged: list[dict] = []
    candidates = train_candidates(s, data, progress=progress, log=log, diverged=diverged)
    oracle = ADAPTERS.get(s.method).uses_target_labels
    names = ("source_val",) if oracle else CRITERIA
    used = "source_val" if oracle else s.select
    if test is None:  # target labels from here on, for the report only
        test = load_target_test(s, data["class_names"], data_root)
    example = data["source_train"][0]
    model = build_adapter(s, len(data["class_names"]), candidates[0]["weight"], example)
    torch.manual_seed(s.seed)
    start = build_adapter(s, len(data["class_names"]), candidates[0]["weight"], example)  # before training
    selected = {}
    for name in names:
        chosen = select(candidates, name)
        model.load_state_dict(chosen["state"])
        selected[name] = {"weight": chosen["weight"], "step": chosen["step"], "criteria": chosen["criteria"],
                          "report": evaluate_domain(model, *test["target_test"], data["class_names"])}
    model.load_state_dict(select(candidates, used)["state"])
    a_distance = {name: proxy_a_distance(embed(net, test["source_images"]), embed(net, test["target_images"]),
                                         seed=s.seed) for name, net in (("before", start), ("after", model))}
    if keep is not None:  # for the plots: the test sets' embeddings before and after
        keep.update(model=model, labels={d: test[f"{d}_test"][1] for d in ("source", "target")},
                    **{name: {d: embed(net, test[f"{d}_test"][0]) for d in ("source", "target")}
                       for name, net in (("before", start), ("after", model))})
    return AdaptResult(settings=asdict(s), selected=selected, used=used, a_distance=a_distance,
                       candidates=[{k: v for k, v in c.items() if k != "state"} for c in candidates],
                       diverged=diverged)
