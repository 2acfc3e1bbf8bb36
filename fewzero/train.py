"""Episodic meta-training: Adam with a step schedule, validation on fixed episodes, best and last checkpoints,
resume, a progress bar, a seed."""
from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from fewzero.atomic import write_json
from fewzero.checkpoint import build_learner, save_checkpoint
from fewzero.config import RunConfig
from fewzero.distributed import agreed, barrier, broadcast_state, check_divisible, rank_and_world, sync_step
from fewzero.errors import FewzeroError
from fewzero.evaluate import evaluate
from fewzero.registry import DATASETS, LEARNERS
from fewzero.run_setup import joined_run, load_resumed_state, plan_run, restored_progress
from fewzero.runlog import RunLog
from fewzero.sampling import EpisodeSampler


def load_split(config: RunConfig, subset: str, data_root: str | None = None, progress: bool = True):
    """The dataset of one subset (train/val/test/...) as the config describes."""
    return DATASETS.create(config.dataset, subset=subset, split=config.split, data_root=data_root,
                           image_size=config.image_size, progress=progress)


def episode_sampler(dataset, config: RunConfig, n_episodes: int, seed: int) -> EpisodeSampler:
    """Fixed evaluation episodes (test_way/test_shot/test_query) over ``dataset``."""
    return EpisodeSampler(dataset.labels, config.test_way, config.test_shot, config.test_query, n_episodes,
                          seed=seed, class_names=getattr(dataset, "class_names", None))


def run_inputs(config: RunConfig, out: Path, resume: bool, data_root: str | None, progress: bool) -> tuple:
    """``(last.pt of a resumed run or None, train set, val set)``, the seed set: what every training loop starts from.

    The data is loaded ``agreed``: data missing on one machine is reported by process 0, and no process waits for
    one that has given up.
    """
    state = load_resumed_state(out, resume)
    torch.manual_seed(config.seed)
    train_set, val_set = agreed(lambda: (load_split(config, config.train_subset, data_root, progress),
                                         load_split(config, config.val_subset, data_root, progress)))
    return state, train_set, val_set


def train(config: RunConfig | None, out_dir: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
          data_root: str | None = None, progress: bool = True, tensorboard: bool = False,
          changes: dict[str, Any] | None = None, method: str | None = None, verbose: bool = False,
          on_validation: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Meta-train ``config.method`` and keep ``best.pt`` (best validation accuracy) and ``last.pt`` in ``out_dir``.

    Every validation appends a line to ``metrics.jsonl`` (and TensorBoard scalars with ``tensorboard=True``); the
    final summary goes to ``metrics.json``. The folder is locked while the run holds it, and a folder that already
    holds a run is refused unless ``resume`` (continue it) or ``overwrite`` (replace it) is given.

    With ``resume=True`` the run continues from ``last.pt`` with its saved config (``config`` may be None), seeing
    exactly the episodes it would have seen without the interruption; ``changes`` may set ``episodes`` or
    ``max_minutes`` of the saved config, and is recorded in the run; ``method``, if given, must be the saved run's.

    Under torchrun every process calls this with the same arguments (``fewzero.distributed``): they share each
    meta-batch, process 0 validates and writes the run folder (progress bars too, unless ``verbose``) and returns
    the metrics; the others return ``{}``. Returns the run's metrics (also in ``metrics.json``).

    ``on_validation(episode, val_accuracy)`` is called after each validation has been logged and checkpointed
    (one process only); an exception it raises (a tuner's pruning signal) ends the run there.
    """
    out = Path(out_dir)
    config, resume, overwrite = plan_run(config, out, resume=resume, overwrite=overwrite, changes=changes or {},
                                         method=method)
    if not getattr(LEARNERS.get(config.method), "meta_trainable", True):
        raise FewzeroError(f"{config.method} is not meta-trained: pretrain its backbone with `fewzero pretrain "
                           f"--dataset {config.dataset}`, then `fewzero eval --method {config.method}`")
    with joined_run(config, out, resume=resume, overwrite=overwrite) as device:
        rank, world = rank_and_world()
        check_divisible(config.meta_batch, config.episodes, world)
        return _train(config, out, device, resume, data_root, progress and (rank == 0 or verbose), tensorboard,
                      changes or {}, on_validation)


def _train(config: RunConfig, out: Path, device: torch.device, resume: bool, data_root: str | None, progress: bool,
           tensorboard: bool, changes: dict[str, Any], on_validation: Callable[[int, float], None] | None = None
           ) -> dict[str, Any]:
    """The training loop of one process; process 0 of several validates and writes the run folder."""
    from tqdm import tqdm

    rank, world = rank_and_world()
    last_path, best_path = out / "last.pt", out / "best.pt"
    state, train_set, val_set = run_inputs(config, out, resume, data_root, progress)
    in_channels = int(train_set[0][0].shape[0])
    learner = build_learner(config, in_channels).to(device)
    optimizer = torch.optim.Adam(learner.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = lr_schedule(optimizer, config)
    start, best, history, seconds, resumes = 0, {"val_accuracy": -1.0, "episode": 0}, [], 0.0, []
    if state is not None:
        learner.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start, best, history, seconds, resumes = restored_progress(state, "episode", changes)
    broadcast_state(learner)
    sampler = EpisodeSampler(train_set.labels, config.train_way, config.train_shot, config.train_query,
                             config.episodes, seed=config.seed, start=start, class_names=train_set.class_names,
                             rank=rank, world=world)
    val_sampler = episode_sampler(val_set, config, config.val_episodes, config.test_seed)
    loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=sampler.collate)
    base = {"config": config.to_dict(), "in_channels": in_channels, "processes": world}

    def checkpoint(episode: int) -> None:
        save_checkpoint(last_path, {**base, "model": learner.state_dict(), "optimizer": optimizer.state_dict(),
                                    "schedule": schedule.state_dict(), "rng": torch.get_rng_state(),
                                    "episode": episode, "best": best, "history": history, "seconds": seconds,
                                    "resumes": resumes})

    def validate_now(episode: int, running: dict[str, float]) -> None:
        report = evaluate(learner, val_set, val_sampler, device, progress=False)
        history.append({"step": episode // config.meta_batch, "episode": episode, "seconds": round(seconds, 1),
                        "train_loss": running["loss"], "train_accuracy": running["accuracy"],
                        "val_accuracy": report.accuracy, "val_ci95": report.ci95, "lr": schedule.get_last_lr()[0]})
        if report.accuracy > best["val_accuracy"]:
            best.update(val_accuracy=report.accuracy, val_ci95=report.ci95, episode=episode)
            save_checkpoint(best_path, {**base, "model": learner.state_dict(),
                                        "metrics": {**best, "train_seconds": round(seconds, 1)}})

    if rank == 0 and resume:  # the checkpoint's history is the truth: lines logged after it are dropped
        (out / "metrics.jsonl").unlink(missing_ok=True)
        with RunLog(out) as replay:
            for record in history:
                replay.record(**record)
    with RunLog(out, tensorboard=tensorboard) if rank == 0 else contextlib.nullcontext() as log:
        learner.train()
        optimizer.zero_grad(set_to_none=True)
        running = {"loss": float("nan"), "accuracy": float("nan")}
        started = time.perf_counter() - seconds
        bar = tqdm(total=config.episodes, initial=start, desc=f"training {config.method}",
                   disable=not progress, dynamic_ncols=True)
        episode, bad_loss, pending = start, None, []
        # a learner built with vmap=True takes this process's tasks of one optimizer step together
        batched = bool(getattr(learner, "vmap", False))
        for episode_data in loader:
            if not pending and hasattr(learner, "set_training_progress"):  # MAML++'s annealing
                learner.set_training_progress(episode / config.episodes)
            pending.append(episode_data.to(device))
            episode += world  # episodes done by all processes together
            bar.update(world)
            at_step = episode % config.meta_batch == 0 or episode == config.episodes
            if batched and not at_step:
                continue
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                if len(pending) == 1:
                    loss, logits = learner.episode_loss(pending[0])
                    losses, logits = loss[None], logits[None]
                else:
                    losses, logits = learner.meta_batch_loss(pending)
            finite = torch.isfinite(losses)
            if not bool(finite.all()):  # reported at the step, by every process together
                first = int((~finite).nonzero()[0])
                bad_loss = bad_loss or (episode - world * (len(pending) - first) + rank + 1, losses[first].item())
            else:
                (losses.sum() / config.meta_batch).backward()
            for task, task_loss, task_logits in zip(pending, losses.tolist(), logits):
                accuracy = 100.0 * float((task_logits.argmax(1) == task.query_y).float().mean())
                if math.isnan(running["loss"]):
                    running = {"loss": task_loss, "accuracy": accuracy}
                else:  # exponential moving averages (of worker 0's episodes) for the progress bar and the history
                    running = {"loss": 0.95 * running["loss"] + 0.05 * task_loss,
                               "accuracy": 0.95 * running["accuracy"] + 0.05 * accuracy}
            pending = []
            if not at_step:
                continue
            seconds = time.perf_counter() - started
            # the time limit is decided once per optimizer step, by all processes together
            out_of_time = config.max_minutes is not None and seconds >= 60 * config.max_minutes
            out_of_time, any_bad = (flag > 0 for flag in sync_step(learner, [float(out_of_time), float(bool(bad_loss))]))
            if any_bad:
                agreed(lambda: _check_loss(bad_loss, schedule.get_last_lr()[0]))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            if episode % config.val_every == 0 or episode == config.episodes or out_of_time:
                if rank == 0:
                    validate_now(episode, running)
                    learner.train()
                    checkpoint(episode)
                    log.record(**history[-1])  # after the checkpoint: a resumed run never logs an episode twice
                    bar.set_postfix(loss=f"{running['loss']:.3f}", acc=f"{running['accuracy']:.1f}",
                                    val=f"{history[-1]['val_accuracy']:.2f}", best=f"{best['val_accuracy']:.2f}")
                    if on_validation is not None:
                        on_validation(episode, history[-1]["val_accuracy"])
                barrier()
            else:
                if rank == 0 and config.checkpoint_every and episode % config.checkpoint_every == 0:
                    checkpoint(episode)  # between validations: a restart loses less work
                bar.set_postfix(loss=f"{running['loss']:.3f}", acc=f"{running['accuracy']:.1f}",
                                best=f"{best['val_accuracy']:.2f}", refresh=False)
            if out_of_time:
                break
        bar.close()
        if rank == 0 and not best_path.is_file():  # resumed a finished run, or zero episodes: validate it
            validate_now(episode, running)
            checkpoint(episode)
            log.record(**history[-1])
    if rank > 0:
        return {}
    metrics = {"best_val_accuracy": best["val_accuracy"], "best_val_ci95": best.get("val_ci95"),
               "best_episode": best["episode"], "episodes_done": episode, "train_seconds": round(seconds, 1),
               "processes": world,
               "stopped_early": episode < config.episodes, "history": history, "config": config.to_dict()}
    write_json(out / "metrics.json", metrics)
    return metrics


def lr_schedule(optimizer: torch.optim.Optimizer, config: RunConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The outer learning-rate schedule; it advances once per optimizer step (every meta_batch episodes).

    ``step``: x ``lr_gamma`` every ``lr_step`` episodes; ``cosine``: from ``lr`` to ``lr_min`` over the run.
    """
    steps = max(1, config.episodes // config.meta_batch)
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=config.lr_min)
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, config.lr_step // config.meta_batch),
                                           gamma=config.lr_gamma)


def _check_loss(bad_loss: tuple[int, float] | None, lr: float) -> None:
    if bad_loss is not None:
        raise FewzeroError(f"training loss became {bad_loss[1]} at episode {bad_loss[0]} (lr {lr:g}): lower --lr "
                           f"and train again")
