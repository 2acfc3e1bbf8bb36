"""Choose a gradient-based learner's test-time inner learning rate on validation classes.

A MAML-family model on Omniglot is meta-trained on 1-shot tasks and serves the 5-shot settings too; its training
step size can overshoot there (ANIL's 20-way model: 68 % on 20-way 5-shot validation tasks at 0.4, 97 % at 0.05).
The step size is chosen per setting on validation episodes, never on the test classes.
"""
from __future__ import annotations

VALIDATION_SEED = 1  # the validation episodes here differ from those that chose the training checkpoint (seed 0)


def lr_grid(training_lr: float, halvings: int = 5) -> list[float]:
    """The training step size and ``halvings`` successive halves of it, largest first."""
    return [training_lr / 2 ** k for k in range(halvings + 1)]


def choose_test_inner_lr(learner, val_set, config, episodes: int) -> tuple[float, dict[str, float]]:
    """(chosen step size, {step size: validation accuracy %}); sets ``learner.test_inner_lr`` to the choice.

    ``config`` gives the episode shape (test_way / test_shot / test_query). A tie keeps the larger step size,
    so the training step size is kept unless a smaller one is strictly better.
    """
    from fewzero.evaluate import evaluate
    from fewzero.train import episode_sampler

    from fewzero.tune.search import best_of, search, space_from_grid

    sampler = episode_sampler(val_set, config, episodes, VALIDATION_SEED)
    scores: dict[str, float] = {}

    def objective(values: dict) -> float:
        learner.test_inner_lr = values["test_inner_lr"]
        scores[f"{values['test_inner_lr']:g}"] = evaluate(learner, val_set, sampler, progress=False).accuracy
        return scores[f"{values['test_inner_lr']:g}"]

    # fewzero.tune's grid search tries the step sizes largest first; ties keep the earlier (larger) one
    best = best_of(search(space_from_grid({"test_inner_lr": lr_grid(learner.inner_lr)}), objective))
    learner.test_inner_lr = best["values"]["test_inner_lr"]
    return learner.test_inner_lr, scores
