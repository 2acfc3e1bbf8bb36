"""Supervised pretraining: mini-batch cross-entropy over all base classes of the train split (each Omniglot
rotation is a class, as in the episodic setting), a validation on fixed few-shot episodes after each epoch that
keeps the best backbone, and resume, as ``fewzero train``.

The checkpoints hold a *pretrained backbone* (``kind: pretrained-backbone``): its weights, the base-class feature
mean (SimpleShot's centre) and the config. Every transfer learner (baseline, baselinepp, simpleshot, logreg,
finetune) loads from one: ``learner_from_checkpoint(path, method="simpleshot")``.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from fewzero.atomic import write_json
from fewzero.checkpoint import PRETRAINED_KIND, save_checkpoint
from fewzero.config import CONFIG_DIR, RunConfig, load_config
from fewzero.distributed import agreed, any_process, barrier, check_batch_divisible, rank_and_world
from fewzero.errors import FewzeroError
from fewzero.evaluate import embed_items, evaluate
from fewzero.registry import BACKBONES, LEARNERS
from fewzero.run_setup import joined_run, plan_run, restored_progress
from fewzero.runlog import RunLog
from fewzero.train import episode_sampler, run_inputs
from fewzero.transfer.augment import batch_generator, random_shift
from fewzero.transfer.objectives import create_objective


def pretrain_config(dataset: str = "omniglot", path: str | os.PathLike | None = None,
                    overrides: dict[str, Any] | None = None, origins: dict[str, str] | None = None) -> RunConfig:
    """Defaults <- ``path`` or ``configs/pretrain_<dataset>.yaml`` <- ``overrides``. The config's ``method`` is the
    learner that scores the validation episodes (SimpleShot by default)."""
    default = CONFIG_DIR / f"pretrain_{dataset}.yaml"
    overrides = {"method": "simpleshot", **(overrides or {})} if path is None and not default.is_file() else overrides
    return load_config(None, dataset, path or (default if default.is_file() else None), overrides, origins)


def pretrain(config: RunConfig | None, out_dir: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
             data_root: str | None = None, progress: bool = True, tensorboard: bool = False,
             changes: dict[str, Any] | None = None, verbose: bool = False) -> dict[str, Any]:
    """Pretrain ``config.backbone`` on ``config.dataset``'s train split; keep ``best.pt`` and ``last.pt`` in
    ``out_dir`` (same folder rules, logs, resume and torchrun processes as ``fewzero.train.train``). Returns the
    run's metrics (``{}`` in processes other than 0)."""
    out = Path(out_dir)
    config, resume, overwrite = plan_run(config, out, resume=resume, overwrite=overwrite, changes=changes or {},
                                         kind=PRETRAINED_KIND)
    with joined_run(config, out, resume=resume, overwrite=overwrite) as device:
        rank, world = rank_and_world()
        check_batch_divisible(config.batch_size, world)
        return _pretrain(config, out, device, resume, data_root, progress and (rank == 0 or verbose), tensorboard,
                         changes or {})


@torch.no_grad()
def base_statistics(backbone: torch.nn.Module, dataset, device: torch.device) -> dict[str, torch.Tensor]:
    """``{"base_mean": (D,)}``: the mean feature of every training image (eval mode), SimpleShot's centre."""
    was_training = backbone.training
    backbone.eval()
    z = embed_items(backbone, dataset, torch.arange(len(dataset)), device, batch_size=1024)
    backbone.train(was_training)
    return {"base_mean": z.double().mean(0).float().cpu()}


class _Classifier(torch.nn.Module):
    """Backbone and pretraining objective as one module, so that DistributedDataParallel sees all parameters."""

    def __init__(self, backbone: torch.nn.Module, objective: torch.nn.Module):
        super().__init__()
        self.backbone, self.objective = backbone, objective

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W), (B,) -> (mean loss, (B, classes) logits)."""
        return self.objective(self.backbone(x).flatten(1), y)


def _data_parallel(model: _Classifier, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel under torchrun (with synchronised batch norm on GPUs), the model itself otherwise.

    torch's SyncBatchNorm runs only on GPUs: on CPU each process normalises its share of a batch by itself.
    """
    if rank_and_world()[1] == 1:
        return model
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def _pretrain(config: RunConfig, out: Path, device: torch.device, resume: bool, data_root: str | None,
              progress: bool, tensorboard: bool, changes: dict[str, Any]) -> dict[str, Any]:
    from tqdm import tqdm

    rank, world = rank_and_world()
    last_path, best_path = out / "last.pt", out / "best.pt"
    state, train_set, val_set = run_inputs(config, out, resume, data_root, progress)
    in_channels = int(train_set[0][0].shape[0])
    backbone = BACKBONES.create(config.backbone, in_channels=in_channels, **config.backbone_args).to(device)
    with torch.no_grad():
        feature_dim = backbone.eval()(train_set[0][0][None].to(device)).flatten(1).shape[1]
    objective = create_objective(config.objective, feature_dim, len(train_set.class_names)).to(device)
    validator = LEARNERS.create(config.method, backbone=backbone, **config.learner)
    optimizer = torch.optim.Adam([*backbone.parameters(), *objective.parameters()], lr=config.lr,
                                 weight_decay=config.weight_decay)
    # each process takes every world-th image of the epoch's order, in batches of batch_size / world: together
    # they see the batches of one process (DistributedSampler's order is randperm seeded with seed + epoch)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=config.seed * 7919)
    per_process = config.batch_size // world
    steps_per_epoch = math.ceil(sampler.num_samples / per_process)
    # cosine annealing over the run's epochs (read at each step, so a resume with more epochs stretches it)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(
        math.pi * min(step / (config.epochs * steps_per_epoch), 1.0))))
    start, best, history, seconds, resumes = 0, {"val_accuracy": -1.0, "epoch": 0}, [], 0.0, []
    if state is not None:
        backbone.load_state_dict(state["model"])
        objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start, best, history, seconds, resumes = restored_progress(state, "epoch", changes)
    model = _data_parallel(_Classifier(backbone, objective), device)  # DDP starts every process from process 0's
    val_sampler = episode_sampler(val_set, config, config.val_episodes, config.test_seed)
    base = {"kind": PRETRAINED_KIND, "config": config.to_dict(), "in_channels": in_channels, "processes": world}

    def validate_now(epoch: int, running: dict[str, float]) -> None:
        statistics = base_statistics(backbone, train_set, device)
        if hasattr(validator, "use_base_statistics"):
            validator.use_base_statistics(statistics)
        report = evaluate(validator, val_set, val_sampler, device, progress=False)
        history.append({"step": epoch * steps_per_epoch, "epoch": epoch, "seconds": round(seconds, 1),
                        "train_loss": running["loss"], "train_accuracy": running["accuracy"],
                        "val_accuracy": report.accuracy, "val_ci95": report.ci95, "lr": schedule.get_last_lr()[0]})
        if report.accuracy > best["val_accuracy"]:
            best.update(val_accuracy=report.accuracy, val_ci95=report.ci95, epoch=epoch)
            save_checkpoint(best_path, {**base, "model": backbone.state_dict(), "statistics": statistics,
                                        "metrics": {**best, "train_seconds": round(seconds, 1)}})
        save_checkpoint(last_path, {**base, "model": backbone.state_dict(), "statistics": statistics,
                                    "objective": objective.state_dict(), "optimizer": optimizer.state_dict(),
                                    "schedule": schedule.state_dict(), "rng": torch.get_rng_state(),
                                    "epoch": epoch, "best": best, "history": history, "seconds": seconds,
                                    "resumes": resumes})

    if resume and rank == 0:  # the checkpoint's history is the truth: lines logged after it are dropped
        (out / "metrics.jsonl").unlink(missing_ok=True)
        with RunLog(out) as replay:
            for record in history:
                replay.record(**record)
    epoch = start
    with RunLog(out, tensorboard=tensorboard) if rank == 0 else contextlib.nullcontext() as log:
        running = {"loss": float("nan"), "accuracy": float("nan")}
        started = time.perf_counter() - seconds
        bar = tqdm(total=config.epochs * steps_per_epoch, initial=start * steps_per_epoch, disable=not progress,
                   desc=f"pretraining {config.backbone} on {config.dataset}", dynamic_ncols=True)
        for epoch in range(start + 1, config.epochs + 1):
            model.train()
            sampler.set_epoch(epoch)  # the order depends on the seed and the epoch only: a resumed run sees the same
            order = list(sampler)
            for first in range(0, len(order), per_process):
                batch = train_set.__getitems__(order[first:first + per_process])
                x = random_shift(batch.x, config.augment_shift, batch_generator(config.seed, epoch, first))
                x, y = x.to(device), batch.y.to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                    loss, logits = model(x, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if any_process(not torch.isfinite(loss)):
                    agreed(lambda: _check_loss(loss, epoch, schedule.get_last_lr()[0]))
                optimizer.step()
                schedule.step()
                accuracy = 100.0 * float((logits.argmax(1) == y).float().mean())
                running = {"loss": loss.item(), "accuracy": accuracy} if math.isnan(running["loss"]) else {
                    "loss": 0.95 * running["loss"] + 0.05 * loss.item(),
                    "accuracy": 0.95 * running["accuracy"] + 0.05 * accuracy}
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{running['loss']:.3f}", acc=f"{running['accuracy']:.1f}",
                                best=f"{best['val_accuracy']:.2f}", refresh=False)
            seconds = time.perf_counter() - started
            if rank == 0:
                validate_now(epoch, running)
                log.record(**history[-1])  # after the checkpoint: a resumed run never logs an epoch twice
            barrier()
            if any_process(config.max_minutes is not None and seconds >= 60 * config.max_minutes):
                break
        bar.close()
        if rank == 0 and not best_path.is_file():  # zero epochs, or resumed a finished run: validate what there is
            validate_now(epoch, running)
            log.record(**history[-1])
    if rank > 0:
        return {}
    metrics = {"best_val_accuracy": best["val_accuracy"], "best_val_ci95": best.get("val_ci95"),
               "best_epoch": best["epoch"], "epochs_done": epoch, "train_seconds": round(seconds, 1),
               "stopped_early": epoch < config.epochs, "processes": world, "train_images": len(train_set),
               "history": history, "config": config.to_dict()}
    write_json(out / "metrics.json", metrics)
    return metrics


def _check_loss(loss: torch.Tensor, epoch: int, lr: float) -> None:
    if not torch.isfinite(loss):
        raise FewzeroError(f"pretraining loss became {loss.item()} in epoch {epoch} (lr {lr:g}): lower --lr and "
                           f"pretrain again")
