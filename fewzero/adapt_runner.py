"""Run one unsupervised domain adaptation: train every trade-off weight, keep candidates, select without target
labels, then evaluate the selected model on the target's test images (the only place target labels are read).

    result = adapt(AdaptSettings(method="dann", source="mnist", target="uci_digits"))   # AdaptSettings: adapt_setup

Data: the source's ``train`` subset (labelled) trains, its ``val`` subset (labelled) scores the candidates; the
target's ``train`` subset gives unlabelled images; the target's ``test`` subset is the final report. The oracle
trains on the target's labelled ``train`` subset and keeps the epoch its target ``val`` accuracy picks.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from fewzero.adapt.selection import CRITERIA, criteria, select
from fewzero.adapt_setup import AdaptSettings, build_adapter, check_settings, load_data, load_target_test
from fewzero.errors import FewzeroError
from fewzero.evaluate_adapt import DomainReport, evaluate_domain, in_batches, predict, proxy_a_distance
from fewzero.registry import ADAPTERS


def embed(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """The representation the classifier reads, (n, hidden), in eval mode."""
    return in_batches(model, model.embed, x).numpy()


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
