"""fewzero.tune: studies complete, resume, share their storage between processes, visit exactly the grid, prune
the worst trial, never read test data, and write a best.yaml that fewzero train takes."""
from __future__ import annotations

import csv
import dataclasses

import pytest
import torch
import yaml

from fewzero.cli import main
from fewzero.tune import StudySettings, load_space, parse_space, tune
from fewzero.tune.objectives import ZeroShotObjective
from fewzero.tune.study import load_study, run_trials
from zsl_synthetic import linear_problem

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ESZSL_SPACE = {"params": {"gamma": {"type": "float", "low": 1e-3, "high": 1e3, "log": True},
                          "lam": {"type": "float", "low": 1e-3, "high": 1e3, "log": True}}}


def hard_problem(**changes):
    return linear_problem(noise=6.0, n_attributes=8, **changes)


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def study_trials(out, name="s"):
    study = load_study(StudySettings(name=name, out=out, trials=1), parse_space(ESZSL_SPACE))
    return study.get_trials(deepcopy=False)


def test_a_tpe_study_completes_and_a_rerun_resumes_it(tmp_path):
    space = parse_space(ESZSL_SPACE)
    objective = ZeroShotObjective("eszsl", hard_problem())
    settings = StudySettings(name="s", out=tmp_path, trials=6, sampler="tpe")
    first = tune(None, space, settings, objective=objective, progress=False)
    assert first["trials"] == {"complete": 6} and first["trials_counted"] == 6
    before = [(t.number, t.params, t.value) for t in study_trials(tmp_path)]
    again = tune(None, space, dataclasses.replace(settings, trials=9), objective=objective, progress=False)
    after = [(t.number, t.params, t.value) for t in study_trials(tmp_path)]
    assert again["trials"] == {"complete": 9}
    assert after[:6] == before and [n for n, _, _ in after] == list(range(9))
    # the same command once more runs nothing: the study already holds its trials
    tune(None, space, dataclasses.replace(settings, trials=9), objective=objective, progress=False)
    assert len(study_trials(tmp_path)) == 9
    assert len(rows(tmp_path / "trials.csv")) == 9
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    top = max(after, key=lambda t: t[2])
    assert best["learner"] == top[1]
    for plot in ("history.png", "importances.png", "parallel.png"):
        assert (tmp_path / plot).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_study_resumed_trial_by_trial_proposes_new_trials_and_is_reproducible(tmp_path, sampler):
    """Each rerun of a seeded study must go on with the random stream, not start it again (it did: a study grown one
    trial per invocation tried its first trial's values again and again during TPE's random start-up)."""
    space = parse_space(ESZSL_SPACE)
    objective = ZeroShotObjective("eszsl", hard_problem())

    def grown_one_by_one(out):
        for count in range(1, 5):
            tune(None, space, StudySettings(name="s", out=out, trials=count, sampler=sampler, seed=3),
                 objective=objective, progress=False, plots=False)
        return [tuple(sorted(t.params.items())) for t in study_trials(out)]

    first = grown_one_by_one(tmp_path / "a")
    assert len(first) == 4 and len(set(first)) == 4
    assert grown_one_by_one(tmp_path / "b") == first


def test_trial_seeds_differ_by_position_and_by_process_on_shared_storage():
    from fewzero.tune.study import trial_seed

    seeds = {trial_seed(0, n) for n in range(50)} | {trial_seed(1, n) for n in range(50)}
    assert len(seeds) == 100 and trial_seed(0, 7) == trial_seed(0, 7) and trial_seed(None, 7) is None
    assert trial_seed(0, 7, shared_storage=True) != trial_seed(0, 7)


def test_an_interrupted_trial_is_run_again(tmp_path):
    space = parse_space(ESZSL_SPACE)
    objective = ZeroShotObjective("eszsl", hard_problem())
    settings = StudySettings(name="s", out=tmp_path, trials=3, sampler="random")
    calls = []

    def dies_on_the_second(trial, values):
        calls.append(values)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is stopped in the middle of a trial
        return objective(trial, values)

    with pytest.raises(KeyboardInterrupt):
        tune_with(dies_on_the_second, objective, space, settings)
    # a process killed outright leaves its trial running: the next run takes it for interrupted too
    study = load_study(settings, space)
    killed = study.ask()
    space.suggest(killed)
    tune(None, space, settings, objective=objective, progress=False)
    trials = study_trials(tmp_path)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    # the trials stopped by the interruption are failed, do not count, and their values are tried again
    assert [t.number for t in interrupted] == [1, 2] and {t.state.name for t in interrupted} == {"FAIL"}
    # trial 2 was the retry of trial 1 (queued first) when the process was killed; trial 3 retries it
    assert interrupted[1].user_attrs["retry_of"] == 1 and interrupted[1].params == interrupted[0].params
    retry = [t for t in complete if t.user_attrs.get("retry_of") == 2]
    assert len(retry) == 1 and retry[0].params == interrupted[0].params


def tune_with(function, objective, space, settings):
    class Wrapped:
        def __getattr__(self, name):
            return getattr(objective, name)

        def __call__(self, trial, values):
            return function(trial, values)

    return tune(None, space, settings, objective=Wrapped(), progress=False)


def test_the_grid_sampler_visits_exactly_the_grid(tmp_path):
    space = parse_space({"params": {
        "lam": {"type": "float", "low": 0.01, "high": 100, "log": True, "grid": [0.01, 1.0, 100.0]},
        "space": {"type": "categorical", "choices": ["semantic", "feature"]}}})
    objective = ZeroShotObjective("sae", hard_problem())
    summary = tune(None, space, StudySettings(name="g", out=tmp_path, trials=50, sampler="grid"),
                   objective=objective, progress=False)
    visited = sorted((t.params["lam"], t.params["space"]) for t in study_trials(tmp_path, "g"))
    assert visited == sorted((lam, s) for lam in (0.01, 1.0, 100.0) for s in ("semantic", "feature"))
    assert summary["trials_target"] == 6


def test_conditional_keys_are_left_out_where_they_do_not_apply():
    space = load_space("configs/spaces/protonet.yaml")
    points = space.grid_points()
    assert all(("learner.scale" in p) == (p["learner.distance"] == "cosine") for p in points)
    assert len(points) == len({tuple(sorted(p.items())) for p in points}) == 5 * 3 * (1 + 3)


def test_the_median_pruner_stops_the_trial_whose_reports_are_worst(tmp_path):
    space = parse_space({"params": {"quality": {"type": "categorical", "choices": [0.9, 0.8, 0.85, 0.1, 0.95]}}})
    settings = StudySettings(name="p", out=tmp_path, trials=5, sampler="grid", pruner="median")
    study = load_study(settings, space)
    from fewzero.tune.study import enqueue_grid

    enqueue_grid(study, space)
    steps_run = {}

    def objective(trial, values):
        steps_run[values["quality"]] = 0
        for step in range(5):
            trial.report(values["quality"], step)
            steps_run[values["quality"]] += 1
            if trial.should_prune():
                import optuna

                raise optuna.TrialPruned()
        return values["quality"]

    run_trials(study, settings, space, objective)
    states = {t.params["quality"]: t.state.name for t in study.get_trials()}
    assert states == {0.9: "COMPLETE", 0.8: "COMPLETE", 0.85: "COMPLETE", 0.1: "PRUNED", 0.95: "COMPLETE"}
    assert steps_run[0.1] == 1 and steps_run[0.95] == 5


def test_a_study_never_reads_test_data(tmp_path):
    """Test items replaced by garbage (and test labels shuffled) give exactly the same trials."""
    space = parse_space(ESZSL_SPACE)
    clean = hard_problem()
    poisoned = dataclasses.replace(
        clean, test_unseen_x=torch.full_like(clean.test_unseen_x, float("nan")),
        test_seen_x=torch.randn_like(clean.test_seen_x) * 1e6,
        test_unseen_y=clean.test_unseen_y.flip(0), test_seen_y=clean.test_seen_y.flip(0))
    trials = []
    for name, data in (("clean", clean), ("poisoned", poisoned)):
        out = tmp_path / name
        tune(None, space, StudySettings(name="s", out=out, trials=5), objective=ZeroShotObjective("eszsl", data),
             progress=False)
        trials.append([(t.params, t.value) for t in study_trials(out)])
    assert trials[0] == trials[1]


def test_few_shot_tuning_from_the_command_line_resumes_and_reads_no_test_subset(tmp_path, monkeypatch, data_root):
    from fewzero.registry import DATASETS

    factory = DATASETS.get("omniglot")
    read = []

    def spy(**kwargs):
        read.append(kwargs["subset"])
        return factory(**kwargs)

    monkeypatch.setitem(DATASETS._entries, "omniglot", spy)
    argv = ["tune", "--method", "simpleshot", "--sampler", "grid", "--episodes", "2", "--out", str(tmp_path / "t"),
            "--quiet"]
    assert main([*argv, "--trials", "2"]) == 0
    assert read and set(read) == {"val"}
    first = rows(tmp_path / "t" / "trials.csv")
    # the same command with more trials resumes the study: the 2 trials stay, the grid's third point is added
    assert main([*argv, "--trials", "3"]) == 0
    second = rows(tmp_path / "t" / "trials.csv")
    assert second[:2] == first[:2] and len(second) == 3 and first[2]["state"] == "WAITING"  # the queued grid point
    assert sorted(r["param_learner.normalisation"] for r in second) == ["cl2n", "l2n", "un"]


def test_two_jobs_share_one_study_without_duplicate_trials(tmp_path, data_root):
    out = tmp_path / "study"
    argv = ["tune", "--method", "logreg", "--sampler", "random", "--pruner", "none", "--episodes", "8",
            "--out", str(out), "--quiet", "--set", "learner.max_iter=50"]
    assert main([*argv, "--trials", "5", "--jobs", "2"]) == 0
    table = rows(out / "trials.csv")
    numbers = [int(r["number"]) for r in table]
    assert sorted(numbers) == list(range(5)) and all(r["state"] == "COMPLETE" for r in table)
    assert len({r["pid"] for r in table}) == 2  # two processes shared the trials
    summary = yaml.safe_load((out / "summary.json").read_text())
    assert summary["jobs"] == 2 and summary["trials_counted"] == 5


def test_best_yaml_round_trips_through_fewzero_train(tmp_path, data_root):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "budget": {"episodes": 4, "val_every": 2, "val_episodes": 2, "max_minutes": None},
        "fixed": {"precision": "fp32", "train_way": 5, "train_query": 2},
        "params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                   "learner.distance": {"type": "categorical", "choices": ["euclidean", "cosine"]}}}))
    out = tmp_path / "study"
    assert main(["tune", "--method", "protonet", "--space", str(space), "--trials", "2", "--out", str(out),
                 "--quiet", "--pruner", "none"]) == 0
    best = yaml.safe_load((out / "best.yaml").read_text())
    trials = [r for r in rows(out / "trials.csv") if r["state"] == "COMPLETE"]
    top = max(trials, key=lambda r: (float(r["value"]), -int(r["number"])))
    assert best["lr"] == pytest.approx(float(top["param_lr"]))
    assert best["learner"]["distance"] == top["param_learner.distance"]
    assert best["train_way"] == 5 and best["episodes"] != 4  # fixed keys kept, the budget not
    (out / "trials" / f"{int(top['number']):04d}" / "best.pt").is_file()
    run = tmp_path / "run"
    assert main(["train", "--method", "protonet", "--config", str(out / "best.yaml"), "--episodes", "2",
                 "--set", "val_every=2", "--set", "val_episodes=2", "--out", str(run), "--quiet"]) == 0
    from fewzero.checkpoint import learner_from_checkpoint

    _, config, _ = learner_from_checkpoint(run / "best.pt")
    assert config.lr == pytest.approx(best["lr"]) and config.learner == best["learner"]
    assert config.train_way == 5


def shipped_learners():
    from fewzero.catalogue import KINDS

    return [(kind, name) for kind, registry in KINDS.items() for name in registry.available() if name != "ensemble"]


@pytest.mark.parametrize("kind, name", shipped_learners())
def test_every_learner_ships_a_space_whose_every_grid_point_builds(kind, name):
    from fewzero.cli.tuning import default_space
    from fewzero.config import load_config
    from fewzero.registry import ZERO_SHOT
    from fewzero.tune import ObjectiveSpec
    from fewzero.tune.runner import check_space

    space = load_space(default_space(name))
    check_space(space, ObjectiveSpec(name, kind).keys(), name)
    assert space.method == name
    points = space.grid_points()
    assert len(points) > 1 or kind == "few-shot" and len(space.params) == 1
    for point in points:
        values = {**space.budget, **space.fixed, **point}
        if kind == "zero-shot":
            ZERO_SHOT.create(name, **{k.removeprefix("learner."): v for k, v in values.items()})
        else:
            load_config(name, "omniglot", overrides=values)


@pytest.mark.parametrize("kind", ["float", "int"])
def test_default_grids_lie_inside_the_range(kind):
    from hypothesis import given, settings, strategies as st

    @settings(max_examples=60, deadline=None)
    @given(low=st.integers(1, 1000), span=st.integers(1, 10_000), log=st.booleans())
    def check(low, span, log):
        high = low + span
        spec = {"type": kind, "low": low if kind == "int" else low / 7, "high": high if kind == "int" else high / 7,
                "log": log}
        grid = parse_space({"params": {"x": spec}}).params[0].grid
        assert list(grid) == sorted(set(grid)) and 2 <= len(grid)
        assert all(spec["low"] <= g <= spec["high"] for g in grid)
        assert grid[0] == spec["low"] or kind == "float"
        assert all(isinstance(g, int) for g in grid) or kind == "float"

    check()


def test_a_zero_shot_best_yaml_drives_fewzero_eval(tmp_path, monkeypatch, capfd):
    import fewzero.cli.zero_shot as zero_shot
    from fewzero.evaluate_zsl import evaluate_zero_shot
    from fewzero.zsl import ESZSL

    data = hard_problem()
    tune(None, parse_space(ESZSL_SPACE), StudySettings(name="s", out=tmp_path, trials=4),
         objective=ZeroShotObjective("eszsl", data, dataset="synthetic", semantics="attributes"), progress=False)
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    loaded = []
    monkeypatch.setattr(zero_shot, "load_data", lambda dataset, *a, **k: loaded.append(dataset) or data)
    capfd.readouterr()
    assert main(["eval", "--method", "eszsl", "--config", str(tmp_path / "best.yaml"), "--quiet"]) == 0
    printed = capfd.readouterr().out
    expected = evaluate_zero_shot(ESZSL(**best["learner"]), data, seed=0).t1
    assert loaded == ["synthetic"] and f"T1 {expected:6.2f} %" in printed
    # a config of another method is refused
    assert main(["eval", "--method", "sae", "--config", str(tmp_path / "best.yaml"), "--quiet"]) == 2
    assert "is for eszsl, not sae" in capfd.readouterr().err


def test_an_sqlite_url_holds_a_study_that_resumes(tmp_path):
    """The RDB storage (what many machines share) through an sqlite URL: created, resumed, heartbeat on."""
    space = parse_space(ESZSL_SPACE)
    objective = ZeroShotObjective("eszsl", hard_problem())
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    settings = StudySettings(name="shared", out=tmp_path / "a", trials=3, storage=url, sampler="random")
    tune(None, space, settings, objective=objective, progress=False, plots=False)
    # another machine's folder, the same database: it adds the missing trials to the same study
    summary = tune(None, space, dataclasses.replace(settings, out=tmp_path / "b", trials=5), objective=objective,
                   progress=False, plots=False)
    assert summary["trials"] == {"complete": 5} and summary["storage"] == url
    assert not (tmp_path / "a" / "study.journal").exists()


def test_cma_es_searches_numeric_spaces_and_refuses_categorical_keys(tmp_path):
    from fewzero.errors import FewzeroError

    objective = ZeroShotObjective("eszsl", hard_problem())
    summary = tune(None, parse_space(ESZSL_SPACE), StudySettings(name="c", out=tmp_path / "c", trials=5,
                                                                 sampler="cmaes"),
                   objective=objective, progress=False, plots=False)
    assert summary["trials"] == {"complete": 5}
    sae = parse_space({"params": {"space": {"type": "categorical", "choices": ["semantic", "feature"]}}})
    with pytest.raises(FewzeroError, match="numbers only"):
        tune(None, sae, StudySettings(name="c", out=tmp_path / "d", trials=2, sampler="cmaes"),
             objective=ZeroShotObjective("sae", hard_problem()), progress=False)
    assert not (tmp_path / "d").exists()
