"""benchmarks/zsl_cub_image_size.py: the decision rule (validation only, a margin fixed in advance) and its table."""
from __future__ import annotations

import pytest
from benchmark_scripts import load_script


def _entry(size: int, val: float, test: float) -> dict:
    results = {name: {"val_t1": val, "t1": test, "calibrated_h": test - 10} for name in ("eszsl", "ale")}
    return {"size": size, "command": f"zsl_cub.py --image-size {size}",
            "row": {"mean_val_t1": val, "results": results, "features": {"train_seconds": size * 3.0}}}


def test_the_size_changes_only_when_validation_beats_the_table_size_by_the_margin():
    script = load_script("zsl_cub_image_size")
    assert script.decision([_entry(64, 48.0, 40.0), _entry(96, 48.9, 60.0)]) == {
        "size": 64, "best_val_size": 96, "switch": False, "gain": pytest.approx(0.9)}  # test T1 never decides
    assert script.decision([_entry(64, 48.0, 40.0), _entry(96, 49.0, 30.0)])["size"] == 96
    assert script.decision([_entry(64, 48.0, 40.0), _entry(96, 47.0, 60.0)])["switch"] is False


def test_the_table_shows_every_size_and_the_decision():
    script = load_script("zsl_cub_image_size")
    rows = [_entry(64, 48.74, 47.9), _entry(96, 47.31, 42.3)]
    prov = {"command": "c", "commit": "x", "date": "d", "machine": "m"}
    text = script.render({"provenance": prov, "table_size": 64, "margin": 1.0, "rows": rows,
                          "decision": script.decision(rows)})
    assert "| 96 px | 47.3 | 47.3 | 47.3 | 42.3 / 32.3 | 42.3 / 32.3 | 288 |" in text
    assert "**Decision:** the tables stay at 64 px (mean validation T1 against 64 px: 96 px -1.4)." in text


def test_the_sizes_must_include_the_table_size(capsys):
    with pytest.raises(SystemExit) as stop:
        load_script("zsl_cub_image_size").main(["--sizes", "96", "--out", "/nonexistent/x"])
    assert stop.value.code == 2 and "--sizes must include 64" in capsys.readouterr().err


def test_the_committed_table_renders_again_from_its_json(tmp_path):
    import shutil

    script = load_script("zsl_cub_image_size")
    committed = script.ROOT / "paper_results" / "zsl_cub50_image_size"
    shutil.copyfile(committed.with_suffix(".json"), tmp_path / "t.json")
    script.main(["--render-only", "--out", str(tmp_path / "t")])
    assert (tmp_path / "t.md").read_text() == committed.with_suffix(".md").read_text()
