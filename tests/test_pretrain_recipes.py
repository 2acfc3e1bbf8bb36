"""benchmarks/pretrain_recipes.py: candidate configs are valid pretraining configs, runs stay apart, the table
says which recipe has the highest validation mean; the transfer table scores a replaced backbone afresh."""
from __future__ import annotations

from benchmark_scripts import load_script

from fewzero.pretrain import pretrain_config

recipes = load_script("pretrain_recipes")


def test_candidates_are_valid_pretraining_configs_in_their_own_folders():
    configs = [path for path in recipes.CANDIDATES.values() if path]
    assert configs and len({recipes.run_folder(label, recipes.ROOT / "runs") for label in recipes.CANDIDATES}) == len(
        recipes.CANDIDATES)
    for path in configs:
        config = pretrain_config("omniglot", recipes.ROOT / path)
        assert config.method == "simpleshot" and config.val_subset == "val"
    assert recipes.VAL_SEED != pretrain_config("omniglot").test_seed  # not the episodes the best epoch was chosen on


def test_table_marks_the_highest_mean():
    cell = {"accuracy": 98.0, "ci95": 0.2}
    heads = [f"{way}w{shot}s {norm}" for way, shot, norm in recipes.CELLS]
    report = {"chosen": "b", "note": "", "recipes": {
        "a": {"training": {"command": "see x"}, "cells": {h: cell for h in heads}, "mean": 98.0},
        "b": {"training": {"command": f"fewzero pretrain --out {recipes.ROOT / 'runs' / 'b'}", "epochs_done": 12,
                           "best_epoch": 11, "train_seconds": 2400, "provenance": {"commit": "c", "threads": 1}},
              "cells": {h: {**cell, "accuracy": 98.5} for h in heads}, "mean": 98.5}},
              "provenance": {"command": "python benchmarks/pretrain_recipes.py", "commit": "c", "date": "d",
                             "machine": "m"}}
    text = recipes.render(report)
    assert "| b | " + " | ".join(["98.50 ± 0.20"] * len(heads)) + " | 98.50 | 12 (11) | 40.0 |" in text
    assert "Highest mean: **b**" in text and str(recipes.ROOT) not in text


def test_transfer_table_cells_follow_the_checkpoint_contents(tmp_path):
    transfer = load_script("omniglot_transfer")
    checkpoint = tmp_path / "pretrain_conv4_omniglot.pt"
    checkpoint.write_bytes(b"first backbone")
    first = transfer.cell_key("simpleshot", checkpoint, {"normalisation": "l2n"}, "test", 5, 1, 1000)
    assert first == transfer.cell_key("simpleshot", checkpoint, {"normalisation": "l2n"}, "test", 5, 1, 1000)
    checkpoint.write_bytes(b"a better backbone, shipped under the same name")
    assert transfer.cell_key("simpleshot", checkpoint, {"normalisation": "l2n"}, "test", 5, 1, 1000) != first
    copy = tmp_path / "best.pt"
    copy.write_bytes(checkpoint.read_bytes())
    assert transfer.cell_key("simpleshot", copy, {"normalisation": "l2n"}, "test", 5, 1, 1000) == transfer.cell_key(
        "simpleshot", checkpoint, {"normalisation": "l2n"}, "test", 5, 1, 1000)  # shipping a scored run keeps its cells
