"""Zero-shot studies choose hyper-parameters on features whose backbone never saw the validation classes (cub50),
while best.yaml names the features fewzero eval scores."""
from __future__ import annotations

from fewzero.tune import ObjectiveSpec
from fewzero.zsl.loaders import tuning_options
from zsl_synthetic import linear_problem


def test_tuning_features_leave_the_validation_classes_out_where_the_dataset_trains_its_own_backbone():
    assert tuning_options("cub50", {}) == {"val_blind": True}
    assert tuning_options("CUB50", {"epochs": 5}) == {"epochs": 5, "val_blind": True}
    assert tuning_options("cub50", {"val_blind": False}) == {"val_blind": False}  # the user's choice stands
    assert tuning_options("cub50", {"val_split": 0}) == {"val_split": 0}  # no validation classes to leave out
    assert tuning_options("cub50", {"val_split": 0, "class_split_seed": 3}) == {
        "val_split": 0, "class_split_seed": 3, "val_blind": True}  # a random split draws its own
    assert tuning_options("xlsa17-cub", {}) == {}  # fixed features


def test_a_zero_shot_study_loads_the_blind_features_and_keeps_the_evaluation_features_for_best_yaml(
        monkeypatch, tmp_path):
    import fewzero.zsl.loaders as loaders

    loaded = []
    monkeypatch.setattr(loaders, "load_zero_shot", lambda dataset, **kw: loaded.append((dataset, kw)) or
                        linear_problem(seed=0))
    config = tmp_path / "c.yaml"
    config.write_text("method: eszsl\ndata: {epochs: 3}\nlearner: {gamma: 1.0}\n")
    objective = ObjectiveSpec("eszsl", "zero-shot", dataset="cub50", config_path=str(config)).build()
    ((dataset, options),) = loaded
    assert dataset == "cub50" and options["epochs"] == 3 and options["val_blind"] is True
    assert objective.data_options == {"epochs": 3}
