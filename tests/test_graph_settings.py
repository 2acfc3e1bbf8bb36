"""A gcnzsl class graph named in a config (``graph: {taxonomy: true, knn: 0}``) is built on the loaded data, the same
way by the command line, the ensemble and the tuner."""
from __future__ import annotations

import pytest
import torch
import yaml
from zsl_synthetic import linear_problem

from fewzero.cli import main
from fewzero.config import CONFIG_DIR
from fewzero.data.semantics import cub_attributes, cub_class_folders
from fewzero.data.zero_shot import ZeroShotData
from fewzero.ensemble_setup import zero_shot_ensemble
from fewzero.errors import FewzeroError
from fewzero.registry import ZERO_SHOT
from fewzero.zsl.class_graph import ClassGraph, build_class_graph
from fewzero.zsl.graph_settings import resolve_graph

FAST = {"hidden_dim": 16, "epochs": 5, "classifier_epochs": 5}


def cub_like() -> ZeroShotData:
    """linear_problem's items under the first 50 CUB class names and attributes (so the taxonomy has edges)."""
    data = linear_problem(seed=1)
    names = cub_class_folders()[:50]
    return ZeroShotData(**{**{k: getattr(data, k) for k in ("seen_classes", "unseen_classes", "train_x", "train_y",
                                                            "test_seen_x", "test_seen_y", "test_unseen_x",
                                                            "test_unseen_y", "val_classes", "info")},
                           "class_names": names, "semantics": cub_attributes(names)})


def same_graph(a: ClassGraph, b: ClassGraph) -> bool:
    return (a.names == b.names and a.sources == b.sources and torch.equal(a.edges, b.edges)
            and torch.equal(a.features, b.features))


@pytest.mark.parametrize("spec", [{"taxonomy": True, "knn": 0}, {"taxonomy": False, "knn": 3}, {}])
def test_a_graph_mapping_builds_what_build_class_graph_builds_on_the_data(spec):
    data = cub_like()
    resolved = resolve_graph({"propagation": "dgp", "graph": spec}, data)
    assert resolved["propagation"] == "dgp"
    assert same_graph(resolved["graph"], build_class_graph(data.class_names, data.semantics, **spec))
    if spec.get("taxonomy", True):
        assert "taxonomy" in resolved["graph"].sources and len(resolved["graph"].names) > len(data.class_names)


def test_settings_without_a_graph_mapping_come_back_unchanged():
    data = cub_like()
    graph = build_class_graph(data.class_names, data.semantics, knn=2)
    assert resolve_graph({"epochs": 3}, data) == {"epochs": 3}
    assert resolve_graph({"graph": graph}, data)["graph"] is graph


@pytest.mark.parametrize("spec, message", [("taxonomy", "give a mapping of taxonomy, knn, edge_list"),
                                           ({"k": 3}, "has no option 'k'"),
                                           ({"knn": -1}, "knn is -1")])
def test_a_bad_graph_mapping_is_a_one_line_error(spec, message):
    with pytest.raises(FewzeroError, match=message):
        resolve_graph({"graph": spec}, cub_like())


def test_an_ensemble_member_gets_the_graph_its_config_names():
    data = cub_like()
    values = {"method": "ensemble", "learner": {"members": [
        {"method": "eszsl"}, {"method": "gcnzsl", "params": {"graph": {"taxonomy": True, "knn": 0}, **FAST}}]}}
    member = zero_shot_ensemble(values, data=data).members[1]
    assert same_graph(member.graph, build_class_graph(data.class_names, data.semantics, taxonomy=True, knn=0))
    with pytest.raises(FewzeroError, match="graph is a dict"):  # without the data there is nothing to build it on
        zero_shot_ensemble(values)


def test_the_command_line_builds_the_graph_set_on_it_or_in_a_config(capfd, tmp_path, monkeypatch):
    import fewzero.cli.zero_shot as zero_shot

    data, built = cub_like(), []
    monkeypatch.setattr(zero_shot, "load_data", lambda *args, **kwargs: data)
    create = ZERO_SHOT.create

    def spy(name, **kwargs):
        built.append(kwargs.get("graph"))
        return create(name, **kwargs)
    monkeypatch.setattr(zero_shot.ZERO_SHOT, "create", spy)
    fast = [text for key, value in FAST.items() for text in ("--set", f"{key}={value}")]
    assert main(["eval", "--method", "gcnzsl", "--quiet", "--set", "graph={taxonomy: true, knn: 0}", *fast]) == 0
    config = tmp_path / "gcnzsl.yaml"
    config.write_text(yaml.safe_dump({"method": "gcnzsl", "learner": {"graph": {"taxonomy": False, "knn": 2},
                                                                      **FAST}}))
    assert main(["eval", "--method", "gcnzsl", "--quiet", "--config", str(config)]) == 0
    assert "zero-shot  T1" in capfd.readouterr().out
    assert same_graph(built[0], build_class_graph(data.class_names, data.semantics, taxonomy=True, knn=0))
    assert same_graph(built[1], build_class_graph(data.class_names, data.semantics, taxonomy=False, knn=2))


def test_a_tuning_study_fits_every_trial_on_the_graph_its_base_names_and_keeps_the_mapping_in_best_yaml():
    from fewzero.tune.objectives import ZeroShotObjective

    data, spec = cub_like(), {"taxonomy": True, "knn": 0}
    objective = ZeroShotObjective("gcnzsl", data, base={"graph": spec, **FAST})
    args = objective.learner_args({"propagation": "dgp"})
    assert same_graph(args["graph"], build_class_graph(data.class_names, data.semantics, **spec))
    assert 0 <= objective(None, {"propagation": "dgp"}) <= 100
    assert objective.best_config({"propagation": "dgp"}, {})["learner"]["graph"] == spec


def test_the_plain_command_evaluates_gcnzsl_as_the_table_ran_it(capfd, monkeypatch):
    """configs/gcnzsl_cub50.yaml is read by default: the table's features, class graph and chosen propagation."""
    import json

    from benchmark_scripts import BENCHMARKS, load_script

    import fewzero.cli.zero_shot as zero_shot

    data, built, options = cub_like(), [], []

    def load(*args, **kwargs):
        options.append(kwargs)
        return data
    monkeypatch.setattr(zero_shot, "load_data", load)
    create = ZERO_SHOT.create
    monkeypatch.setattr(zero_shot.ZERO_SHOT, "create", lambda name, **kw: built.append(kw) or create(name, **kw))
    fast = [text for key, value in FAST.items() for text in ("--set", f"{key}={value}")]
    assert main(["eval", "--method", "gcnzsl", "--quiet", *fast]) == 0
    capfd.readouterr()
    table = json.loads((BENCHMARKS.parent / "paper_results" / "zsl_cub50.json").read_text())
    graph = load_script("zsl_common").FIXED["gcnzsl"]["graph"]
    assert same_graph(built[0]["graph"], build_class_graph(data.class_names, data.semantics, **graph))
    assert built[0]["propagation"] == table["results"]["attributes"]["gcnzsl"]["params"]["propagation"]
    assert {k: options[0][k] for k in ("heads", "weighting")} == {
        k: table["chosen_features"][k] for k in ("heads", "weighting")}


def test_fewzero_tune_starts_from_the_shipped_config_and_its_best_yaml_keeps_the_features(monkeypatch, tmp_path):
    """A zero-shot study reads configs/<method>_<dataset>.yaml (or --config) like fewzero eval: its features
    (data:) load the data and go into best.yaml, its learner settings (gcnzsl's graph included) start every trial."""
    import fewzero.zsl.loaders as loaders
    from fewzero.tune import ObjectiveSpec

    data, options = cub_like(), []
    monkeypatch.setattr(loaders, "load_zero_shot", lambda *a, **kw: options.append(kw) or data)
    objective = ObjectiveSpec("gcnzsl", "zero-shot").build()
    shipped = yaml.safe_load((CONFIG_DIR / "gcnzsl_cub50.yaml").read_text())
    assert {k: options[0][k] for k in shipped["data"]} == shipped["data"]
    assert same_graph(objective.learner_args({})["graph"],
                      build_class_graph(data.class_names, data.semantics, **shipped["learner"]["graph"]))
    assert objective.best_config({"propagation": "gcn"}, {})["data"] == shipped["data"]
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump({"method": "eszsl", "data": {"heads": "classes"}, "learner": {"lam": 1.0}}))
    objective = ObjectiveSpec("eszsl", "zero-shot", config_path=str(own)).build()
    assert options[1]["heads"] == "classes" and objective.learner_args({})["lam"] == 1.0
