"""benchmarks/zsl_cub_recipes.py: the decision rule (validation only, a margin fixed in advance) and its table."""
from __future__ import annotations

import pytest
from benchmark_scripts import load_script


def _entry(recipe: str, val: float, test: float) -> dict:
    results = {name: {"val_t1": val, "t1": test, "calibrated_h": test - 10} for name in ("eszsl", "ale")}
    return {"recipe": recipe, "command": f"zsl_cub.py {recipe}",
            "row": {"mean_val_t1": val, "results": results, "features": {"train_seconds": 288.0}}}


def test_the_recipe_changes_only_when_validation_beats_the_tables_by_the_margin():
    script = load_script("zsl_cub_recipes")
    higher_test_only = [_entry("64x30", 48.0, 40.0), _entry("96x30", 48.9, 60.0)]  # test T1 never decides
    assert script.decision(higher_test_only) == {
        "recipe": "64x30", "best_val_recipe": "96x30", "switch": False, "gain": pytest.approx(0.9)}
    assert script.decision([_entry("64x30", 48.0, 40.0), _entry("64x60", 49.0, 30.0)])["recipe"] == "64x60"
    assert script.decision([_entry("64x30", 48.0, 40.0), _entry("96x30", 47.0, 60.0)])["switch"] is False
    # another seed of the tables' recipe is never chosen, however high it scores
    assert script.decision([_entry("64x30", 48.0, 40.0), _entry("64x30s1", 52.0, 60.0)])["switch"] is False


def test_the_table_shows_every_recipe_and_the_decision():
    script = load_script("zsl_cub_recipes")
    rows = [_entry("64x30", 48.74, 47.9), _entry("96x30", 47.31, 42.3), _entry("64x60", 49.0, 45.0)]
    prov = {"command": "c", "commit": "x", "date": "d", "machine": "m"}
    text = script.render({"provenance": prov, "table_recipe": "64x30", "margin": 1.0, "rows": rows,
                          "decision": script.decision(rows)})
    assert "| 96x30 | 47.3 | 47.3 | 47.3 | 42.3 / 32.3 | 42.3 / 32.3 | 288 |" in text
    assert "**Decision:** the tables stay at 64x30 (mean validation T1 against 64x30: 96x30 -1.4, 64x60 +0.3; " in text
    seeds = rows + [_entry("64x30s1", 50.74, 47.0)]
    text = script.render({"provenance": prov, "table_recipe": "64x30", "margin": 1.0, "rows": seeds,
                          "decision": script.decision(seeds)})
    assert "64x30 with seeds 0, 1 has mean validation T1 48.7, 50.7 (range 2.0 points)" in text
    assert "against 64x30: 96x30 -1.4, 64x60 +0.3; rows of other seeds are not candidates" in text


def test_recipes_are_parsed_and_must_include_the_tables_recipe(capsys):
    script = load_script("zsl_cub_recipes")
    assert script.parse_recipe("96x30") == (96, 30, 0) and script.parse_recipe("64x30s2") == (64, 30, 2)
    assert script.run_folder(64, 60) == "px64_ep60" and script.run_folder(96, 30) == "px96"
    assert script.run_folder(64, 30, 1) == "px64_s1"
    for argv, message in ((["--recipes", "96x30"], "--recipes must include 64x30"),
                          (["--recipes", "64x30", "96"], "recipe '96' is not SIZExEPOCHS"),
                          (["--recipes", "64x30", "64x30s"], "recipe '64x30s' is not SIZExEPOCHS")):
        with pytest.raises(SystemExit) as stop:
            script.main([*argv, "--out", "/nonexistent/x"])
        assert stop.value.code == 2 and message in capsys.readouterr().err


def test_the_committed_table_renders_again_from_its_json(tmp_path):
    import shutil

    script = load_script("zsl_cub_recipes")
    committed = script.ROOT / "paper_results" / "zsl_cub50_recipes"
    shutil.copyfile(committed.with_suffix(".json"), tmp_path / "t.json")
    script.main(["--render-only", "--out", str(tmp_path / "t")])
    assert (tmp_path / "t.md").read_text() == committed.with_suffix(".md").read_text()
