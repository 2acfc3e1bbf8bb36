"""Search spaces: a YAML file per learner (``configs/spaces/<method>.yaml``), validated into a ``SearchSpace``.

A space file holds::

    method: protonet            # optional: the learner the space is for (checked against --method)
    budget:                     # config keys every trial uses but best.yaml does not (a short training run)
      episodes: 600
    fixed:                      # config keys every trial uses and best.yaml keeps
      precision: fp32
    params:                     # what the study searches, by config key (learner.* for the learner's settings)
      lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true, grid: [1.0e-4, 1.0e-3, 1.0e-2]}
      learner.distance: {type: categorical, choices: [euclidean, cosine]}
      learner.scale: {type: float, low: 1, high: 30, when: {learner.distance: cosine}}

``type`` is ``float``, ``int`` or ``categorical``; ``log`` samples on a log scale; ``step`` quantises; ``grid``
gives the grid sampler's points (default: every categorical choice, every int when there are at most
``MAX_INT_GRID``, else ``DEFAULT_GRID_POINTS`` evenly spaced points, on a log scale when ``log``); ``when`` makes a
key conditional on the values of keys listed before it.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fewzero.errors import FewzeroError

PARAM_TYPES = ("float", "int", "categorical")
SPEC_KEYS = {"type", "low", "high", "log", "step", "choices", "grid", "when"}
FILE_KEYS = {"method", "budget", "fixed", "params"}
DEFAULT_GRID_POINTS = 5
MAX_INT_GRID = 10


@dataclass(frozen=True)
class Param:
    """One searched key: its distribution and its grid points."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    grid: tuple = ()
    when: dict[str, Any] = field(default_factory=dict)

    def suggest(self, trial) -> Any:
        """Ask an Optuna trial for a value of this key."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def active(self, values: dict[str, Any]) -> bool:
        """Whether the key applies, given the values chosen for the keys before it."""
        return all(values.get(key) in (wanted if isinstance(wanted, list) else [wanted])
                   for key, wanted in self.when.items())


@dataclass(frozen=True)
class SearchSpace:
    """The validated contents of a space file (``params`` in file order)."""

    params: tuple[Param, ...]
    budget: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    method: str | None = None
    source: str = "<space>"

    def suggest(self, trial) -> dict[str, Any]:
        """The values of one trial: every active key, in file order."""
        values: dict[str, Any] = {}
        for param in self.params:
            if param.active(values):
                values[param.name] = param.suggest(trial)
        return values

    def at_edge(self, values: dict[str, Any], *, within: float = 0.02) -> list[dict[str, Any]]:
        """The numeric keys of ``values`` that sit at an end of their range: within ``within`` of the range's width
        (measured on the log scale for ``log`` keys) of ``low`` or ``high``. Each as ``{"name", "value", "end",
        "low", "high"}``. A best trial there says the best may lie beyond the range: widen it."""
        found = []
        for param in self.params:
            if param.type == "categorical" or param.name not in values or param.high <= param.low:
                continue
            scale = math.log if param.log else float
            low, high, value = scale(param.low), scale(param.high), scale(values[param.name])
            for end, bound in (("low", low), ("high", high)):
                if abs(value - bound) <= within * (high - low):
                    found.append({"name": param.name, "value": values[param.name], "end": end,
                                  "low": param.low, "high": param.high})
        return found

    def grid_points(self) -> list[dict[str, Any]]:
        """Every distinct point of the grid, in file order (the first key varies slowest), inactive keys left out."""
        points: list[dict[str, Any]] = []
        for values in itertools.product(*(param.grid for param in self.params)):
            point: dict[str, Any] = {}
            for param, value in zip(self.params, values):
                if param.active(point):
                    point[param.name] = value
            if point not in points:
                points.append(point)
        return points


def level_along(name: str, best: dict[str, Any], best_value: float, trials: Iterable[tuple[dict[str, Any], float]],
                *, tolerance: float = 1e-9) -> int:
    """How many of ``trials`` (params, value) differ from ``best`` in ``name`` only and score the same: a best at an
    end of ``name``'s range with such ties sits on a level stretch, where a wider range is unlikely to score more."""
    others = {k: v for k, v in best.items() if k != name}
    return sum(1 for params, value in trials
               if value is not None and abs(value - best_value) <= tolerance and params.get(name) != best.get(name)
               and {k: v for k, v in params.items() if k != name} == others)


def load_space(path: str | Path, keys: dict[str, Any] | None = None) -> SearchSpace:
    """Read and validate a space file.

    Args:
        path: the YAML file.
        keys: the keys a trial may set (name -> anything), e.g. the config's fields and ``learner.<name>``;
            a ``params``/``fixed``/``budget`` key outside them is an error. None accepts any key.
    """
    from fewzero.config import read_yaml

    values = read_yaml(path)
    return parse_space(values, source=str(path), keys=keys)


def parse_space(values: dict, source: str = "<space>", keys: dict[str, Any] | None = None) -> SearchSpace:
    """Validate the mapping of a space file (see the module docstring) into a ``SearchSpace``."""
    where = f"space file {source}"
    unknown = sorted(set(values) - FILE_KEYS)
    if unknown:
        raise FewzeroError(f"{where} has an unknown key {unknown[0]!r}: use {', '.join(sorted(FILE_KEYS))}")
    specs = values.get("params")
    if not isinstance(specs, dict) or not specs:
        raise FewzeroError(f"{where} searches nothing: give params: with at least one key (see configs/spaces/)")
    settings = {}
    for section in ("budget", "fixed"):
        settings[section] = values.get(section) or {}
        if not isinstance(settings[section], dict):
            raise FewzeroError(f"{where}: {section} must be a mapping of config keys to values")
        for key in settings[section]:
            _check_key(key, keys, f"{where} ({section})")
    params: list[Param] = []
    for name, spec in specs.items():
        _check_key(name, keys, where)
        params.append(_param(str(name), spec, params, f"{where}, key {name!r}"))
    method = values.get("method")
    if method is not None and not isinstance(method, str):
        raise FewzeroError(f"{where}: method must be a learner name")
    return SearchSpace(tuple(params), settings["budget"], settings["fixed"], method, source)


def _check_key(key: Any, keys: dict[str, Any] | None, where: str) -> None:
    if not isinstance(key, str):
        raise FewzeroError(f"{where}: key {key!r} is not a config key name")
    if keys is not None and key not in keys:
        raise FewzeroError(f"{where}: unknown key {key!r}: choose from {', '.join(sorted(keys))}")


def _number(spec: dict, name: str, where: str, integer: bool) -> float | None:
    value = spec.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise FewzeroError(f"{where}: {name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    return value


def _param(name: str, spec: Any, before: list[Param], where: str) -> Param:
    if not isinstance(spec, dict):
        raise FewzeroError(f"{where} must be a mapping like {{type: float, low: 0.001, high: 0.1}}")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise FewzeroError(f"{where} has an unknown field {unknown[0]!r}: use {', '.join(sorted(SPEC_KEYS))}")
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise FewzeroError(f"{where} has type {kind!r}: choose one of {', '.join(PARAM_TYPES)}")
    when = _when(spec.get("when"), before, where)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise FewzeroError(f"{where} needs a non-empty list of choices")
        extra = sorted(set(spec) - {"type", "choices", "grid", "when"})
        if extra:
            raise FewzeroError(f"{where}: {extra[0]} does not apply to a categorical key: drop it")
        grid = _grid(spec, where, lambda v: v in choices, "one of the choices") or tuple(choices)
        return Param(name, kind, choices=tuple(choices), grid=grid, when=when)
    integer = kind == "int"
    low, high = _number(spec, "low", where, integer), _number(spec, "high", where, integer)
    step = _number(spec, "step", where, integer)
    log = spec.get("log", False)
    if low is None or high is None:
        raise FewzeroError(f"{where} needs low and high")
    if not isinstance(log, bool):
        raise FewzeroError(f"{where}: log must be true or false")
    if not low < high:
        raise FewzeroError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise FewzeroError(f"{where}: a log scale needs low > 0, got {low}")
    if step is not None and (step <= 0 or log):
        raise FewzeroError(f"{where}: step must be positive and cannot be combined with log")
    if "choices" in spec:
        raise FewzeroError(f"{where}: choices apply to categorical keys only: drop it or set type: categorical")
    inside = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high
              and (not integer or float(v).is_integer()))
    grid = _grid(spec, where, inside, f"{'an integer' if integer else 'a number'} in [{low}, {high}]")
    return Param(name, kind, low, high, log, step, grid=grid or _default_grid(low, high, log, step, integer),
                 when=when)


def _grid(spec: dict, where: str, valid, what: str) -> tuple:
    grid = spec.get("grid")
    if grid is None:
        return ()
    if not isinstance(grid, list) or not grid:
        raise FewzeroError(f"{where}: grid must be a non-empty list of values")
    for value in grid:
        if not valid(value):
            raise FewzeroError(f"{where}: grid value {value!r} is not {what}")
    return tuple(dict.fromkeys(grid))


def _default_grid(low, high, log: bool, step, integer: bool) -> tuple:
    if integer and (high - low) // (step or 1) + 1 <= MAX_INT_GRID:
        return tuple(range(int(low), int(high) + 1, int(step or 1)))
    n = DEFAULT_GRID_POINTS
    if log:
        points = [math.exp(math.log(low) + k * (math.log(high) - math.log(low)) / (n - 1)) for k in range(n)]
    else:
        points = [low + k * (high - low) / (n - 1) for k in range(n)]
    if step:
        points = [low + round((p - low) / step) * step for p in points]
    points = [int(round(p)) for p in points] if integer else [float(f"{p:.6g}") for p in points]
    return tuple(dict.fromkeys(min(max(p, low), high) for p in points))


def _when(when: Any, before: list[Param], where: str) -> dict[str, Any]:
    if when is None:
        return {}
    if not isinstance(when, dict) or not when:
        raise FewzeroError(f"{where}: when must map earlier keys to the value(s) that switch this key on")
    names = {param.name: param for param in before}
    for key, wanted in when.items():
        if key not in names:
            raise FewzeroError(f"{where}: when names {key!r}, which is not a key listed before it")
        allowed = names[key].choices
        for value in wanted if isinstance(wanted, list) else [wanted]:
            if allowed and value not in allowed:
                raise FewzeroError(f"{where}: when {key}={value!r} is not one of its choices {list(allowed)}")
    return dict(when)
