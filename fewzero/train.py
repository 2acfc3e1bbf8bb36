"""Episodic meta-training: Adam with a step schedule, validation on fixed episodes, best and last checkpoints,
resume, a progress bar, a seed."""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from fewzero.atomic import write_json
from fewzero.checkpoint import PRETRAINED_KIND, build_learner, load_checkpoint, save_checkpoint, saved_config
from fewzero.config import RunConfig, check_device, validate
from fewzero.errors import FewzeroError
from fewzero.evaluate import evaluate
from fewzero.parallel import barrier, broadcast_state, rank_and_world, run_workers, sync_step
from fewzero.registry import DATASETS, LEARNERS
from fewzero.run_folder import RESUMABLE_KEYS, RunFolder
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


def train(config: RunConfig | None, out_dir: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
          data_root: str | None = None, progress: bool = True, tensorboard: bool = False,
          changes: dict[str, Any] | None = None, method: str | None = None) -> dict[str, Any]:
    """Meta-train ``config.method`` and keep ``best.pt`` (best validation accuracy) and ``last.pt`` in ``out_dir``.

    Every validation appends a line to ``metrics.jsonl`` (and TensorBoard scalars with ``tensorboard=True``); the
    final summary goes to ``metrics.json``. The folder is locked while the run holds it, and a folder that already
    holds a run is refused unless ``resume`` (continue it) or ``overwrite`` (replace it) is given.

    With ``resume=True`` the run continues from ``last.pt`` with its saved config (``config`` may be None), seeing
    exactly the episodes it would have seen without the interruption; ``changes`` may set ``episodes`` or
    ``max_minutes`` of the saved config, and is recorded in the run; ``method``, if given, must be the saved run's.
    With ``config.workers > 1`` that many processes share each meta-batch (``fewzero.parallel``). Returns the run's metrics (also in ``metrics.json``).
    """
    with RunFolder(out_dir, resume=resume, overwrite=overwrite) as out:
        if resume:
            config = resumed_config(out / "last.pt", changes or {}, method)
        elif config is None:
            raise FewzeroError("train() needs a config unless it resumes a run")
        elif changes:
            raise FewzeroError("changes apply to a resumed run only: put them in the config")
        check_device(config.device, require_available=True)
        if not getattr(LEARNERS.get(config.method), "meta_trainable", True):
            raise FewzeroError(f"{config.method} is not meta-trained: pretrain its backbone with `fewzero pretrain "
                               f"--dataset {config.dataset}`, then `fewzero eval --method {config.method}`")
        if config.workers == 1:
            return _train(config, out, resume, data_root, progress, tensorboard, changes or {})
        run_workers(_train, (config, out, resume, data_root, progress, tensorboard, changes or {}), config.workers)
        return json.loads((out / "metrics.json").read_text())


def resumed_config(last_path: Path, changes: dict[str, Any], method: str | None, kind: str | None = None
                   ) -> RunConfig:
    """The config saved in ``last_path`` with ``changes`` (only RESUMABLE_KEYS) applied; ``method`` must match,
    and the run must be of ``kind`` (None: a ``fewzero train`` run; ``PRETRAINED_KIND``: a pretraining)."""
    unknown = sorted(set(changes) - set(RESUMABLE_KEYS))
    if unknown:
        raise FewzeroError(f"a resumed run keeps its saved config; {', '.join(unknown)} cannot change (only "
                           f"{', '.join(RESUMABLE_KEYS)} can): drop them, or start a new run with --out elsewhere")
    payload = load_checkpoint(last_path)
    if payload.get("kind") != kind:
        held, other = (("a pretraining", "fewzero pretrain --resume") if payload.get("kind") == PRETRAINED_KIND
                       else ("a fewzero train run", "fewzero train --resume"))
        raise FewzeroError(f"{last_path.parent} holds {held}: continue it with {other}")
    saved = saved_config(payload, last_path)
    if method is not None and saved.get("method") != method:
        raise FewzeroError(f"{last_path.parent} holds a {saved.get('method')} run, not {method}: "
                           f"pass --method {saved.get('method')}")
    return validate({**saved, **changes}, f" of {last_path}")


def restored_progress(state: dict[str, Any], counter: str, changes: dict[str, Any]) -> tuple:
    """Restore the random state of a ``last.pt`` and return its ``(start, best, history, seconds, resumes)``, this
    resume appended to ``resumes``; ``counter`` is what the run counts (``episode``, ``epoch``)."""
    torch.set_rng_state(state["rng"])
    resumes = [*state.get("resumes", []), {counter: state[counter], "changes": changes,
                                           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}]
    return state[counter], state["best"], state["history"], state["seconds"], resumes


def _train(config: RunConfig, out: Path, resume: bool, data_root: str | None, progress: bool, tensorboard: bool,
           changes: dict[str, Any]) -> dict[str, Any]:
    """The training loop of one process; worker 0 of several validates and writes the run folder."""
    from tqdm import tqdm

    rank, world = rank_and_world()
    last_path, best_path = out / "last.pt", out / "best.pt"
    state = load_checkpoint(last_path) if resume else None
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    train_set = load_split(config, config.train_subset, data_root, progress and rank == 0)
    val_set = load_split(config, config.val_subset, data_root, progress and rank == 0)
    in_channels = int(train_set[0][0].shape[0])
    learner = build_learner(config, in_channels).to(device)
    optimizer = torch.optim.Adam(learner.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # lr_step counts episodes; the schedule advances once per optimizer step (every meta_batch episodes)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, config.lr_step // config.meta_batch),
                                               gamma=config.lr_gamma)
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
    base = {"config": config.to_dict(), "in_channels": in_channels}

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
                   disable=not progress or rank > 0, dynamic_ncols=True)
        episode = start
        for episode_data in loader:
            episode_data = episode_data.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                loss, logits = learner.episode_loss(episode_data)
            if not torch.isfinite(loss):
                raise FewzeroError(f"training loss became {loss.item()} at episode {episode + rank + 1} "
                                   f"(lr {schedule.get_last_lr()[0]:g}): lower --lr and train again")
            (loss / config.meta_batch).backward()
            episode += world  # episodes done by all workers together
            bar.update(world)
            accuracy = 100.0 * float((logits.argmax(1) == episode_data.query_y).float().mean())
            if episode == start + world:
                running = {"loss": loss.item(), "accuracy": accuracy}
            else:  # exponential moving averages (of worker 0's episodes) for the progress bar and the history
                running = {"loss": 0.95 * running["loss"] + 0.05 * loss.item(),
                           "accuracy": 0.95 * running["accuracy"] + 0.05 * accuracy}
            if episode % config.meta_batch and episode != config.episodes:
                continue
            seconds = time.perf_counter() - started
            # the time limit is decided once per optimizer step, by all workers together
            out_of_time = config.max_minutes is not None and seconds >= 60 * config.max_minutes
            out_of_time = sync_step(learner, [float(out_of_time)])[0] > 0
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
                barrier()
            else:
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
               "stopped_early": episode < config.episodes, "history": history, "config": config.to_dict()}
    write_json(out / "metrics.json", metrics)
    return metrics
