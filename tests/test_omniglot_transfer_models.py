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
