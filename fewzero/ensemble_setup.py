"""Building an ensemble from a config: members from their checkpoints (few-shot) or their parameters (zero-shot),
the combiner fitted on validation episodes / seen classes only.

A config lists the members under ``learner.members``::

    learner:
      combine: mean_prob                       # or stacking
      members:
        - {method: protonet}                   # the packaged (or cached) checkpoint
        - {method: matching, checkpoint: runs/matching/best.pt}
        - {method: simpleshot, settings: {normalisation: cl2n}}
        - {method: eszsl, params: {gamma: 10.0, lam: 1.0}}   # zero-shot members (all of one kind)
        - {method: ale, semantics: text}       # a zero-shot member on one block of attributes+text semantics
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fewzero.checkpoint import PRETRAINED_KIND, learner_from_checkpoint, load_checkpoint, saved_config
from fewzero.config import ZERO_SHOT_CONFIG_KEYS, RunConfig, load_config
from fewzero.ensemble import Ensemble, ZeroShotEnsemble
from fewzero.ensemble.combine import check_combine
from fewzero.errors import FewzeroError
from fewzero.evaluate import member_logits_on_episodes
from fewzero.pretrained import default_checkpoint
from fewzero.registry import LEARNERS, ZERO_SHOT
from fewzero.train import episode_sampler, load_split
from fewzero.zsl.graph_settings import resolve_graph
from fewzero.zsl.semantic_block import SemanticBlock, block_view

MEMBER_KEYS = {"few-shot": ("method", "checkpoint", "settings"), "zero-shot": ("method", "params", "semantics")}
ZERO_SHOT_ENSEMBLE_OPTIONS = ("combine", "names", "holdout", "splits", "generalized", "seed", "calibrate", "step",
                              "stacking_c")
VALIDATION_SEED_OFFSET = 1  # validation episodes are drawn with test_seed + 1: never the test episodes' seed


def member_kind(method: str) -> str:
    if method == "ensemble":
        raise FewzeroError("an ensemble member cannot be an ensemble: list its members instead")
    if method in LEARNERS:
        return "few-shot"
    if method in ZERO_SHOT:
        return "zero-shot"
    raise FewzeroError(f"unknown ensemble member method {method!r}: choose one of "
                       f"{', '.join(n for n in LEARNERS.available() if n != 'ensemble')} (few-shot) or "
                       f"{', '.join(ZERO_SHOT.available())} (zero-shot)")


def ensemble_kind(learner_settings: Any, where: str = "") -> str:
    """``few-shot`` or ``zero-shot``: the kind of every member listed in ``learner_settings['members']`` (checked:
    a non-empty list of mappings with a known method, all of one kind, with known keys only)."""
    members = learner_settings.get("members") if isinstance(learner_settings, dict) else None
    if not members:
        raise FewzeroError(f"the ensemble{where} has no members: list them under learner.members, e.g. "
                           f"- {{method: protonet}}")
    if not isinstance(members, (list, tuple)):
        raise FewzeroError(f"learner.members{where} must be a list of members ({{method: NAME, ...}})")
    kinds = []
    for i, spec in enumerate(members, 1):
        if not isinstance(spec, dict) or not isinstance(spec.get("method"), str):
            raise FewzeroError(f"ensemble member {i}{where} must be a mapping with a method, got {spec!r}")
        kind = member_kind(spec["method"])
        if kinds and kind != kinds[0]:
            raise FewzeroError(f"ensemble member {i} ({spec['method']}){where} is a {kind} learner but member 1 "
                               f"({members[0]['method']}) is {kinds[0]}: an ensemble combines learners of one kind")
        unknown = sorted(set(spec) - set(MEMBER_KEYS[kind]))
        if unknown:
            raise FewzeroError(f"ensemble member {i} ({spec['method']}){where} has unknown key {unknown[0]!r}: a "
                               f"{kind} member takes {', '.join(MEMBER_KEYS[kind])}")
        kinds.append(kind)
    check_combine(learner_settings.get("combine", "mean_prob"))
    return kinds[0]


def validation_seed(config: RunConfig) -> int:
    return config.test_seed + VALIDATION_SEED_OFFSET


def load_member(spec: dict, index: int, config: RunConfig):
    """(learner, its trained config, checkpoint path) of few-shot member ``index`` (1-based) of ``config``."""
    method, settings = spec["method"], spec.get("settings") or {}
    label = f"ensemble member {index} ({method})"
    if not isinstance(settings, dict):
        raise FewzeroError(f"{label}: settings must be a mapping of learner options")
    member_config = load_config(method, config.dataset, overrides={
        "split": config.split, "test_way": config.test_way, "test_shot": config.test_shot,
        **{f"learner.{k}": v for k, v in settings.items()}}, origins={f"learner.{k}": f"{label} settings"
                                                                      for k in settings})
    if spec.get("checkpoint"):
        path = Path(spec["checkpoint"]).expanduser()
        if not path.is_file():
            raise FewzeroError(f"{label}: checkpoint {path} does not exist: fix the member's checkpoint path, or "
                               f"drop it to use the packaged model")
    else:
        path = default_checkpoint(member_config)
        if path is None:
            raise FewzeroError(f"{label}: no trained {method} model for {config.dataset} is packaged or cached: "
                               f"train one (fewzero train --method {method} --dataset {config.dataset}) and give it "
                               f"as the member's checkpoint")
    payload = load_checkpoint(path)
    saved = saved_config(payload, path)
    if saved.get("dataset", RunConfig.dataset) != config.dataset:
        raise FewzeroError(f"{label}: checkpoint {path} holds a model trained on {saved.get('dataset')}, not "
                           f"{config.dataset}: give a checkpoint trained on {config.dataset}")
    if payload.get("kind") != PRETRAINED_KIND and saved.get("method", RunConfig.method) != method:
        raise FewzeroError(f"{label}: checkpoint {path} holds a {saved.get('method')} model: give a {method} "
                           f"checkpoint, or set the member's method to {saved.get('method')}")
    # the task shape lets a pretrained backbone's member adapt with the settings chosen for it on validation
    learner, trained, _ = learner_from_checkpoint(path, settings or None, method=method, dataset=config.dataset,
                                                  learner_settings=member_config.learner, way=config.test_way,
                                                  shot=config.test_shot)
    return learner, trained, path


def few_shot_ensemble(config: RunConfig, data_root: str | None = None, progress: bool = True,
                      device: str | torch.device = "cpu") -> tuple[Ensemble, RunConfig, dict[str, Any]]:
    """(the ensemble with its combiner fitted on validation episodes, ``config`` with the members' image size,
    what was done: members' checkpoints, validation episodes and seed).

    Validation episodes: ``config.val_episodes`` of ``config.val_subset``, with the test episodes' way, shot and
    query and the seed ``test_seed + 1``.
    """
    ensemble_kind(config.learner)
    options = {k: v for k, v in config.learner.items() if k != "members"}
    loaded = [load_member(spec, i, config) for i, spec in enumerate(config.learner["members"], 1)]
    sizes = {trained.image_size for _, trained, _ in loaded}
    if len(sizes) > 1:
        raise FewzeroError(f"the ensemble's members were trained on different image sizes ({sorted(sizes)}): use "
                           f"members trained on one image size")
    config.image_size = sizes.pop()
    ensemble = Ensemble(members=[learner for learner, _, _ in loaded],
                        **{"names": [spec["method"] for spec in config.learner["members"]], **options})
    ensemble.to(device)
    val_set = load_split(config, config.val_subset, data_root, progress)
    sampler = episode_sampler(val_set, config, config.val_episodes, validation_seed(config))
    scores, labels = member_logits_on_episodes(ensemble, val_set, sampler, device, progress)
    ensemble.fit_combiner(scores, labels)
    info = {"checkpoints": {name: str(path) for name, (_, _, path) in zip(ensemble.names, loaded)},
            "validation": {"subset": config.val_subset, "episodes": config.val_episodes,
                           "seed": validation_seed(config)}}
    return ensemble, config, info


def member_block(spec: dict, data, what: str) -> tuple[int, int] | None:
    """The [start, stop) columns a zero-shot member with a ``semantics`` key reads (None: all of them), from the
    data's ``info["semantic_blocks"]`` (``attributes+text`` CUB-50 holds both blocks)."""
    kind = spec.get("semantics")
    if kind is None:
        return None
    if data is None:
        raise FewzeroError(f"{what} reads {kind!r} semantics: build the ensemble with its data")
    blocks = data.info.get("semantic_blocks") or {}
    if kind not in blocks:
        held = ", ".join(blocks) or "no named blocks"
        raise FewzeroError(f"{what} reads {kind!r} semantics but the data holds {held}: load --semantics "
                           f"attributes+text (CUB-50) to give members either block")
    start, stop = blocks[kind]
    return None if (start, stop) == (0, data.semantics.shape[1]) else (int(start), int(stop))


def zero_shot_member(spec: dict, data=None, *, seed: int = 0, progress: bool = True, what: str = "zero-shot member"):
    """One zero-shot learner from its member mapping (``{method, params, semantics}``, ``what`` names it in errors):
    ``params`` checked against the learner's options, ``seed`` / ``progress`` as defaults, a ``graph`` mapping built
    on ``data`` (on the member's own block when it names its ``semantics``), wrapped in a ``SemanticBlock`` then."""
    params = spec.get("params") or {}
    parameters = ZERO_SHOT.parameters(spec["method"])
    if not isinstance(params, dict) or set(params) - set(parameters):
        wrong = sorted(set(params) - set(parameters)) if isinstance(params, dict) else ["params"]
        raise FewzeroError(f"{what} has no option {wrong[0]!r}: choose from {', '.join(parameters)}")
    params = {**{k: v for k, v in {"seed": seed, "progress": progress}.items() if k in parameters}, **params}
    block = member_block(spec, data, what)
    if data is not None:  # a class graph is built on the member's own semantics
        params = resolve_graph(params, data if block is None else block_view(data, *block), f" of {what}")
    try:
        member = ZERO_SHOT.create(spec["method"], **params)
    except (TypeError, ValueError) as exc:
        raise FewzeroError(f"cannot build {what}: {exc}") from None
    return member if block is None else SemanticBlock(member, start=block[0], stop=block[1])


def zero_shot_ensemble(values: dict[str, Any], where: str = "", seed: int = 0, progress: bool = True,
                       data=None) -> ZeroShotEnsemble:
    """A zero-shot ensemble from a config mapping (``method: ensemble``, ``learner: {members: [...], ...}``);
    member ``seed`` / ``progress`` options default to ``seed`` / ``progress``; a member's ``graph`` mapping (gcnzsl)
    is built on ``data`` (a ``ZeroShotData``, see ``fewzero.zsl.graph_settings``)."""
    unknown = sorted(set(values) - set(ZERO_SHOT_CONFIG_KEYS))
    if unknown:
        raise FewzeroError(f"unknown key {unknown[0]!r}{where} for a zero-shot ensemble: use "
                           f"{', '.join(ZERO_SHOT_CONFIG_KEYS)}")
    settings = values.get("learner") or {}
    if ensemble_kind(settings, where) != "zero-shot":
        raise FewzeroError(f"the ensemble{where} lists few-shot members: evaluate it as a few-shot ensemble")
    options = {k: v for k, v in settings.items() if k != "members"}
    bad = sorted(set(options) - set(ZERO_SHOT_ENSEMBLE_OPTIONS))
    if bad:
        raise FewzeroError(f"unknown key learner.{bad[0]}{where}: a zero-shot ensemble takes members, "
                           f"{', '.join(ZERO_SHOT_ENSEMBLE_OPTIONS)}")
    members = [zero_shot_member(spec, data, seed=seed, progress=progress,
                                what=f"ensemble member {i} ({spec['method']}){where}")
               for i, spec in enumerate(settings["members"], 1)]
    names = options.pop("names", None) or [spec["method"] for spec in settings["members"]]
    try:
        return ZeroShotEnsemble(members, names=names, **{"seed": seed, **options})
    except (TypeError, ValueError) as exc:
        raise FewzeroError(f"bad ensemble options{where} ({exc}): fix learner.{', learner.'.join(options)}") from None
