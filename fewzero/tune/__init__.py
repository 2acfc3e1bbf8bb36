"""Hyper-parameter tuning on Optuna: search spaces from YAML, objectives on validation data only, resumable
studies shared by processes and machines. ``fewzero tune`` is the command; ``tune`` the function behind it.

    from fewzero.tune import ObjectiveSpec, StudySettings, load_space, tune
    space = load_space("configs/spaces/eszsl.yaml")
    tune(ObjectiveSpec("eszsl", "zero-shot", dataset="xlsa17-CUB"), space,
         StudySettings(name="eszsl", out=Path("runs/tune_eszsl"), trials=20))
"""
from fewzero.tune.runner import ObjectiveSpec, tune
from fewzero.tune.space import Param, SearchSpace, load_space, parse_space
from fewzero.tune.study import PRUNERS, SAMPLERS, StudySettings

__all__ = ["ObjectiveSpec", "PRUNERS", "Param", "SAMPLERS", "SearchSpace", "StudySettings", "load_space",
           "parse_space", "tune"]
