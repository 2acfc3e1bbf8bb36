"""benchmarks/omniglot_transfer.py with several models of one learner: at 20-way 1-shot, Relation's validation grid
chooses between its 5-way model and a 20-way 1-shot one, when that checkpoint is given."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from benchmark_scripts import load_script

from fewzero.checkpoint import save_checkpoint
from fewzero.errors import FewzeroError

transfer = load_script("omniglot_transfer")


def test_the_model_setting_picks_the_checkpoint_of_a_grid_point():
    assert transfer.checkpoint_key("relation", {}) == "relation"
    assert transfer.checkpoint_key("relation", {"model": "5-way 1-shot"}) == "relation"
    assert transfer.checkpoint_key("relation", {"model": "20-way 1-shot"}) == "relation_20way_1shot"
    assert transfer.checkpoint_key("matching", {}) == "matching"
    assert transfer.checkpoint_key("simpleshot", {"normalisation": "l2n"}) == "pretrained"


def test_the_20_way_model_is_a_candidate_only_at_20_way_1_shot_and_only_when_given():
    both = {"relation": Path("a.pt"), "relation_20way_1shot": Path("b.pt")}
    assert transfer.setting_grid("relation", 20, 1, both) == {"model": ["5-way 1-shot", "20-way 1-shot"]}
    assert transfer.setting_grid("relation", 20, 1, {"relation": Path("a.pt")}) == {}
    for way, shot in ((5, 1), (5, 5), (20, 5)):
        assert transfer.setting_grid("relation", way, shot, both) == {}
    assert transfer.setting_grid("logreg", 20, 1, both) == transfer.GRIDS["logreg"]


def test_a_cell_is_named_by_its_models_weights_not_by_the_model_setting(tmp_path):
    five, twenty = tmp_path / "five.pt", tmp_path / "twenty.pt"
    save_checkpoint(five, {"model": {"w": torch.ones(2)}})
    save_checkpoint(twenty, {"model": {"w": torch.zeros(2)}})

    def key(path, settings):
        return transfer.cell_key("relation", path, settings, "test", 20, 1, 1000)

    # the 5-way model chosen at 20w1s reuses the cells it was scored in before it had a rival
    assert key(five, {"model": "5-way 1-shot"}) == key(five, {})
    assert key(twenty, {"model": "20-way 1-shot"}) != key(five, {"model": "5-way 1-shot"})


def test_relation_rows_are_stale_when_either_of_its_models_changed():
    previous = {"results": {"simpleshot": {}, "relation": {}}, "command": "c", "commit": "a", "date": "d",
                "methods": ["simpleshot", "relation"],
                "weights_digests": {"pretrained": "p", "relation": "r", "relation_20way_1shot": "t1"}}
    transfer.merged(previous, {"simpleshot": {}}, {"pretrained": "p", "relation": "r", "relation_20way_1shot": "t1"})
    with pytest.raises(FewzeroError, match="rows of relation were scored with other weights"):
        transfer.merged(previous, {"simpleshot": {}}, {"pretrained": "p", "relation": "r",
                                                        "relation_20way_1shot": "t2"})
    # a run from before the 20-way model recorded no digest for it: its rows stand
    older = {**previous, "weights_digests": {"pretrained": "p", "relation": "r"}}
    rows, earlier = transfer.merged(older, {"simpleshot": {}}, {"pretrained": "p", "relation": "r",
                                                                 "relation_20way_1shot": "t2"})
    assert earlier[0]["methods"] == ["relation"] and "relation" in rows
    # a later run not given the rival that lost keeps the rows; one not given the model a cell chose cannot
    chose = {"20w1s": {"settings": {"model": "20-way 1-shot"}}, "5w1s": {"settings": {}}}
    lost = {"20w1s": {"settings": {"model": "5-way 1-shot"}}, "5w1s": {"settings": {}}}
    for row, kept in ((lost, True), (chose, False)):
        table = {**previous, "results": {"simpleshot": {}, "relation": row}}
        if kept:
            transfer.merged(table, {"simpleshot": {}}, {"pretrained": "p", "relation": "r"})
        else:
            with pytest.raises(FewzeroError, match="rows of relation"):
                transfer.merged(table, {"simpleshot": {}}, {"pretrained": "p", "relation": "r"})


def test_the_table_lists_each_models_validation_score_and_how_an_unpackaged_model_was_trained(tmp_path):
    table = load_script("omniglot_transfer_table")
    _training, model_candidates = table._training, table.model_candidates
    results = {"relation": {"20w1s": {"settings": {"model": "5-way 1-shot"}, "validation": [
        {"settings": {"model": "5-way 1-shot"}, "accuracy": 95.64}, {"settings": {"model": "20-way 1-shot"},
                                                                    "accuracy": 94.28}]}},
               "logreg": {"5w1s": {"settings": {"C": 10.0}, "validation": [{"settings": {"C": 1.0}, "accuracy": 1.0},
                                                                           {"settings": {"C": 10.0}, "accuracy": 2.0}]}}}
    assert model_candidates(results) == [
        "- relation 20w1s: the 5-way 1-shot model 95.64 (chosen), the 20-way 1-shot model 94.28"]
    run = tmp_path / "best.pt"
    save_checkpoint(run, {"model": {"w": torch.ones(1)}, "config": {"method": "relation", "train_way": 20,
                                                                    "train_shot": 1},
                          "metrics": {"val_accuracy": 94.28, "episode": 3000, "train_seconds": 1125.0}})
    runs = transfer.training_runs({"relation_20way_1shot": run,
                                   "relation": transfer.ROOT / "fewzero/pretrained/relation_omniglot.pt"})
    assert list(runs) == ["relation_20way_1shot"]  # packaged models have their own .md
    assert _training(runs["relation_20way_1shot"]) == (
        " (relation trained on 20-way 1-shot tasks; best validation 94.28 at episode 3000, 18.8 min of training)")


def test_a_20_way_candidate_that_is_not_there_is_an_error_before_any_work(tmp_path, monkeypatch):
    import sys

    monkeypatch.setattr(sys, "argv", ["omniglot_transfer.py", "--relation-20way", str(tmp_path / "none.pt"),
                                      "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="--relation-20way .*none.pt does not exist"):
        transfer.main()
    assert not (tmp_path / "out").exists()
