"""A best trial at an end of a numeric range: ``SearchSpace.at_edge`` on the scale each key is searched on, and the
note ``fewzero tune`` prints and keeps in summary.json."""
from __future__ import annotations

import pytest

from fewzero.tune import StudySettings, parse_space, tune
from fewzero.tune.objectives import ZeroShotObjective
from zsl_synthetic import linear_problem

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_value_at_an_end_of_its_range_is_found_on_the_scale_it_is_searched_on():
    space = parse_space({"params": {
        "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
        "margin": {"type": "float", "low": 0.0, "high": 1.0},
        "steps": {"type": "int", "low": 1, "high": 101},
        "kind": {"type": "categorical", "choices": ["a", "b"]}}})
    assert space.at_edge({"lr": 1e-3, "margin": 0.5, "steps": 50, "kind": "a"}) == []
    found = space.at_edge({"lr": 0.1, "margin": 0.015, "steps": 99, "kind": "b"})
    assert [(f["name"], f["end"]) for f in found] == [("lr", "high"), ("margin", "low"), ("steps", "high")]
    # log scale: 1.1e-5 is 0.01 of the log range from 1e-5 (an edge), 2e-5 is 0.075 of it (not)
    assert [f["end"] for f in space.at_edge({"lr": 1.1e-5})] == ["low"] and space.at_edge({"lr": 2e-5}) == []
    assert space.at_edge({"margin": 0.03}) == [] and space.at_edge({"margin": 0.03}, within=0.05) != []


def test_a_best_trial_at_an_end_of_the_range_is_reported(tmp_path, capfd):
    space = parse_space({"params": {"gamma": {"type": "float", "low": 1e-3, "high": 1e3, "log": True,
                                              "grid": [1e-3, 1e3]}}})
    summary = tune(None, space, StudySettings(name="e", out=tmp_path, trials=2, sampler="grid"),
                   objective=ZeroShotObjective("eszsl", linear_problem(noise=6.0, n_attributes=8)), progress=False)
    (edge,) = summary["best_at_edge"]
    assert edge["name"] == "gamma" and edge["value"] == summary["best"]["params"]["gamma"]
    assert edge["end"] == ("low" if edge["value"] == 1e-3 else "high")
    err = capfd.readouterr().err
    assert f"fewzero: note: the best trial's gamma={edge['value']:.4g} sits at the {edge['end']} end" in err
    assert "widen the range" in err


def test_ties_along_a_key_are_counted_only_where_every_other_value_is_the_same():
    from fewzero.tune.space import level_along

    best = {"C": 1e-4, "norm": True}
    trials = [({"C": 1e-4, "norm": True}, 99.0), ({"C": 1e-3, "norm": True}, 99.0),
              ({"C": 1e-2, "norm": True}, 98.0), ({"C": 1e-3, "norm": False}, 99.0), ({"C": 1e-2, "norm": True}, None)]
    assert level_along("C", best, 99.0, trials) == 1  # not the best itself, nor the tie with another norm
    assert level_along("C", best, 99.5, trials) == 0


def test_a_best_at_the_end_of_a_level_stretch_says_widening_is_unlikely_to_help(tmp_path, capfd):
    # a constant objective: every grid point ties, so the best (the first) sits at the low end of a level stretch
    space = parse_space({"params": {"gamma": {"type": "float", "low": 1e-3, "high": 1e3, "log": True,
                                              "grid": [1e-3, 1.0, 1e3]}}})

    class Flat(ZeroShotObjective):
        def __call__(self, trial, values):
            return 50.0

    summary = tune(None, space, StudySettings(name="flat", out=tmp_path, trials=3, sampler="grid"),
                   objective=Flat("eszsl", linear_problem(noise=6.0, n_attributes=8)), progress=False)
    (edge,) = summary["best_at_edge"]
    assert edge["level_trials"] == 2
    err = capfd.readouterr().err
    assert "2 trial(s) with another gamma and the same other values score the same" in err
    assert "widen the range" not in err
