"""Evaluate the Omniglot benchmark's models on the fixed test episodes of every setting they serve, with the shared
evaluator; a gradient-based learner also at the test inner step size chosen on validation episodes."""
from __future__ import annotations

from functools import partial
from pathlib import Path

from inner_lr_selection import choose_test_inner_lr
from omniglot_memory import trace_rss
from omniglot_settings import SETTINGS, model_for
from provenance import relative


def evaluate_models(method: str, checkpoints: dict[str, Path], data_root: str | None, episodes: int,
                    val_episodes: int = 200) -> dict:
    """{setting: result} for the settings the given models ({model: checkpoint}) serve, plus the evaluation's speed
    or memory record. A gradient-based learner is evaluated twice: with its training inner step size (Finn et al.'s
    protocol) and with the step size chosen on ``val_episodes`` validation episodes of the same setting."""
    import torch

    from fewzero.checkpoint import learner_from_checkpoint
    from fewzero.evaluate import evaluate
    from fewzero.learners.base import EmbeddingLearner
    from fewzero.train import episode_sampler, load_split

    results, test_set, val_set, extra = {}, None, None, {}
    for way, shot in SETTINGS:
        model = model_for(method, way, shot)
        if model not in checkpoints:
            continue
        learner, config, _ = learner_from_checkpoint(checkpoints[model])
        # MAML++ with learned per-step step sizes has no test-time step size to choose
        chooses_lr = hasattr(learner, "test_inner_lr") and getattr(learner, "step_lrs", None) is None
        if chooses_lr:  # the first evaluation is at the training step size
            learner.test_inner_lr = learner.inner_lr
        if hasattr(learner, "test_inner_lr_by_shot"):  # a packaged model's stored choice (store_test_inner_lr.py)
            learner.test_inner_lr_by_shot = {}  # is set aside: the step size is chosen afresh on validation
        if test_set is None:
            test_set = load_split(config, config.test_subset, data_root)
        config.test_way, config.test_shot, config.test_query = way, shot, 15
        sampler = episode_sampler(test_set, config, episodes, config.test_seed)
        if isinstance(learner, EmbeddingLearner) or extra:
            report = evaluate(learner, test_set, sampler)
        else:  # the first setting of a gradient-based learner: also trace memory over the whole evaluation
            report, memory = trace_rss(partial(evaluate, learner, test_set, sampler))
            extra["eval_memory"] = {"setting": f"{way}w{shot}s", "episodes": episodes, **memory}
        print(report, flush=True)
        result = {
            "accuracy": report.accuracy, "ci95": report.ci95, "episodes": report.n_episodes, "f1": 100 * report.f1,
            "eval_seconds": report.seconds, "model": model, "test_inner_steps": getattr(learner, "test_inner_steps", None),
            "batch_norm": getattr(learner, "batch_norm", None), "checkpoint": relative(checkpoints[model])}
        if chooses_lr:
            if val_set is None:
                val_set = load_split(config, config.val_subset, data_root)
            chosen, scores = choose_test_inner_lr(learner, val_set, config, val_episodes)
            result["training_inner_lr"] = {k: result[k] for k in ("accuracy", "ci95", "f1")} | {"lr": learner.inner_lr}
            result["test_inner_lr"], result["validation"] = chosen, {"episodes": val_episodes, "accuracy": scores}
            if chosen != learner.inner_lr:
                report = evaluate(learner, test_set, sampler)
                print(f"test_inner_lr {chosen:g} (chosen on validation): {report}", flush=True)
                result.update({"accuracy": report.accuracy, "ci95": report.ci95, "f1": 100 * report.f1})
        results[f"{way}w{shot}s"] = result
        if isinstance(learner, EmbeddingLearner) and (way, shot) == (5, 1):
            fast = evaluate(learner, test_set, sampler, progress=False)
            slow = evaluate(learner, test_set, sampler, progress=False, reuse_embeddings=False)
            extra["eval_speed"] = {"episodes": episodes, "seconds_reuse_embeddings": fast.seconds,
                                   "seconds_per_episode_forward": slow.seconds, "ratio": slow.seconds / fast.seconds,
                                   "same_accuracy": abs(fast.accuracy - slow.accuracy) < 1e-6,
                                   "threads": torch.get_num_threads()}
    return {"results": results, **extra}
