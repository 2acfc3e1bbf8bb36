"""``search``: an in-memory Optuna study over a space, for scripts that tune inside a larger run (the benchmarks).

    from fewzero.tune.search import best_of, search, space_from_grid
    trials = search(space_from_grid({"C": [0.1, 1.0, 10.0]}), lambda values: validation_accuracy(**values))
    best = best_of(trials)["values"]
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fewzero.tune.space import SearchSpace
from fewzero.tune.study import StudySettings, enqueue_grid, make_sampler, trial_target


def space_from_grid(grid: dict[str, list]) -> SearchSpace:
    """A space whose keys take exactly the listed values (its grid is their product, first key slowest)."""
    from fewzero.tune.space import parse_space

    return parse_space({"params": {key: {"type": "categorical", "choices": list(values)}
                                   for key, values in grid.items()}}, source="<grid>")


def search(space: SearchSpace, objective: Callable[[dict[str, Any]], float], *, sampler: str = "grid",
           trials: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Run ``objective(values) -> score`` (higher is better) over the space; returns ``[{"values", "value",
    "grid_index"}]`` in the order tried. ``sampler="grid"`` tries every grid point once (``trials`` defaults to the
    grid's size); ``grid_index`` is a point's place in ``grid_points`` (None for other samplers)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    points = space.grid_points()
    settings = StudySettings(name="search", out=None, trials=trials or len(points), sampler=sampler, seed=seed)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(settings, space))
    if sampler == "grid":
        enqueue_grid(study, space)
    tried = []
    for _ in range(trial_target(settings, space)):
        trial = study.ask()
        values = space.suggest(trial)
        value = float(objective(values))
        study.tell(trial, value)
        tried.append({"values": values, "value": value,
                      "grid_index": points.index(values) if sampler == "grid" else None})
    return tried


def best_of(tried: list[dict[str, Any]]) -> dict[str, Any]:
    """The best trial; ties go to the one tried first."""
    return max(tried, key=lambda t: (t["value"], -tried.index(t)))
