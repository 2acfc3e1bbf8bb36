"""benchmarks/pretrain_recipes.py: candidate configs are valid pretraining configs, runs stay apart, the table
says which recipe has the highest validation mean; the transfer table scores a replaced backbone afresh."""
from __future__ import annotations

import pytest
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


def test_transfer_table_cells_follow_the_checkpoint_weights(tmp_path):
    import torch

    from fewzero.checkpoint import TASK_SETTINGS, save_checkpoint

    transfer = load_script("omniglot_transfer")
    checkpoint = tmp_path / "pretrain_conv4_omniglot.pt"

    def key(path):
        return transfer.cell_key("simpleshot", path, {"normalisation": "l2n"}, "test", 5, 1, 1000)

    save_checkpoint(checkpoint, {"model": {"w": torch.ones(3)}, "statistics": {"base_mean": torch.zeros(3)}})
    first = key(checkpoint)
    assert first == key(checkpoint)
    save_checkpoint(checkpoint, {"model": {"w": torch.ones(3)}, "statistics": {"base_mean": torch.zeros(3)},
                                 TASK_SETTINGS: {"simpleshot": {"5w1s": {"normalisation": "l2n"}}}})
    assert key(checkpoint) == first  # storing the chosen settings keeps the cells
    save_checkpoint(checkpoint, {"model": {"w": torch.full((3,), 2.0)}, "statistics": {"base_mean": torch.zeros(3)}})
    assert key(checkpoint) != first  # a better backbone shipped under the same name is scored afresh
    save_checkpoint(checkpoint, {"model": {"w": torch.ones(3)}, "statistics": {"base_mean": torch.ones(3)}})
    assert key(checkpoint) != first
    copy = tmp_path / "best.pt"
    copy.write_bytes(checkpoint.read_bytes())
    assert key(copy) == key(checkpoint)  # shipping a scored run keeps its cells


def test_transfer_table_renders_again_from_its_json(tmp_path, monkeypatch):
    """--render-only rewrites the committed table from its json (the meta-learners' rows from their own tables)."""
    import shutil
    import sys

    transfer = load_script("omniglot_transfer")
    monkeypatch.syspath_prepend(str(transfer.ROOT / "benchmarks"))  # main() imports its table writer when it runs
    shutil.copyfile(transfer.ROOT / "paper_results" / "omniglot_transfer.json", tmp_path / "omniglot_transfer.json")
    monkeypatch.setattr(sys, "argv", ["omniglot_transfer.py", "--render-only", "--out", str(tmp_path)])
    transfer.main()
    committed = (transfer.ROOT / "paper_results" / "omniglot_transfer.md").read_text()
    assert (tmp_path / "omniglot_transfer.md").read_text() == committed


def test_a_transfer_run_of_some_learners_keeps_the_other_rows_with_their_runs(tmp_path, monkeypatch):
    transfer = load_script("omniglot_transfer")
    monkeypatch.syspath_prepend(str(transfer.ROOT / "benchmarks"))
    from omniglot_transfer_table import _earlier_runs

    def run(commit, methods):
        return {"command": f"python benchmarks/omniglot_transfer.py ({commit})", "commit": commit, "date": "d",
                "machine": "m", "load_average": "0", "methods": methods}

    first = {"results": {"relation": {"5w1s": "old"}, "simpleshot": {"5w1s": "s"}, "matching": {"5w1s": "m"}},
             **run("a", ["simpleshot", "matching", "relation"])}
    rows, earlier = transfer.merged(first, {"relation": {"5w1s": "new"}})
    assert list(rows) == ["simpleshot", "matching", "relation"] and rows["relation"] == {"5w1s": "new"}
    assert earlier == [run("a", ["simpleshot", "matching"])]
    second = {"results": rows, **run("b", ["relation"]), "earlier_runs": earlier}
    rows, earlier = transfer.merged(second, {"matching": {"5w1s": "m2"}})
    assert earlier == [run("a", ["simpleshot"]), run("b", ["relation"])]
    assert transfer.merged(second, {m: {} for m in ("simpleshot", "matching", "relation")})[1] == []  # all redone
    lines = _earlier_runs({"methods": ["matching"], "earlier_runs": earlier})
    assert lines[0].startswith("- learners of this run: matching;") and "  - simpleshot: `python" in lines[1]
    assert _earlier_runs({"methods": ["x"], "earlier_runs": []}) == []


def test_a_kept_row_must_have_been_scored_with_the_weights_the_checkpoint_holds_now():
    transfer = load_script("omniglot_transfer")
    from fewzero.errors import FewzeroError

    previous = {"results": {"simpleshot": {}, "relation": {}}, "command": "c", "commit": "a", "date": "d",
                "methods": ["simpleshot", "relation"], "weights_digests": {"pretrained": "p1", "relation": "r1"}}
    rows, earlier = transfer.merged(previous, {"relation": {}}, {"pretrained": "p1", "relation": "r2"})
    assert earlier[0]["methods"] == ["simpleshot"] and earlier[0]["weights_digests"]["pretrained"] == "p1"
    with pytest.raises(FewzeroError, match="rows of simpleshot were scored with other weights"):
        transfer.merged(previous, {"relation": {}}, {"pretrained": "p2", "relation": "r2"})
    legacy = {k: v for k, v in previous.items() if k != "weights_digests"}  # a run from before digests: kept
    assert transfer.merged(legacy, {"relation": {}}, {"pretrained": "p2"})[1][0]["methods"] == ["simpleshot"]
    second = {"results": rows, "command": "c2", "commit": "b", "date": "d2", "methods": ["relation"],
              "weights_digests": {"pretrained": "p1", "relation": "r2"}, "earlier_runs": earlier}
    assert transfer.run_of(second, "relation")["commit"] == "b" and transfer.run_of(second, "simpleshot")["commit"] == "a"
    with pytest.raises(FewzeroError, match="names no run that scored logreg"):
        transfer.run_of(second, "logreg")


def test_a_run_of_some_recipes_keeps_the_other_rows_with_the_run_that_scored_them():
    cell = {"accuracy": 98.0, "ci95": 0.2}
    heads = [f"{way}w{shot}s {norm}" for way, shot, norm in recipes.CELLS]

    def row(mean, scored=None):
        return {"training": {"command": "see x"}, "cells": {h: {**cell, "accuracy": mean} for h in heads},
                "mean": mean, **({"scored": scored} if scored else {})}

    first_run = {"command": "python benchmarks/pretrain_recipes.py", "commit": "a", "date": "d1", "machine": "m"}
    earlier = {"recipes": {"a": row(98.0), "b": row(98.5)}, "provenance": first_run, "note": "busy"}
    second_run = {"command": "python benchmarks/pretrain_recipes.py --recipes c", "commit": "b", "date": "d2",
                  "machine": "m", "note": ""}
    rows = recipes.merged(earlier, {"c": row(98.7, second_run), "b": row(98.2, second_run)})
    assert list(rows) == ["a", "b", "c"] and rows["b"]["mean"] == 98.2  # a rescored recipe is replaced
    assert rows["a"]["scored"] == {**first_run, "note": "busy"}
    assert recipes.merged(None, {"c": row(98.7, second_run)}) == {"c": row(98.7, second_run)}
    text = recipes.render({"recipes": rows, "chosen": "c", "provenance": second_run, "note": ""})
    assert "- a: scored by `python benchmarks/pretrain_recipes.py` at commit a, d1 (m). Note: busy" in text
    assert "- b; c: scored by `python benchmarks/pretrain_recipes.py --recipes c` at commit b" in text
