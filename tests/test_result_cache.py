"""benchmarks/result_cache.py: a stopped benchmark continues from its cache, and one run can take the results that
processes sharing the work wrote to their own caches."""
from __future__ import annotations

import json

import pytest
from benchmark_scripts import load_script


def test_a_cached_result_is_not_computed_again(tmp_path):
    Cache = load_script("result_cache").Cache
    path = tmp_path / "c.json"
    assert Cache(path).get_or_run("k", lambda: 1) == 1
    assert Cache(path).get_or_run("k", lambda: pytest.fail("computed again")) == 1


def test_absorb_takes_the_missing_results_keeps_its_own_and_refuses_other_settings(tmp_path):
    Cache = load_script("result_cache").Cache
    mine, share, other = tmp_path / "mine.json", tmp_path / "share.json", tmp_path / "other.json"
    share.write_text(json.dumps({"options": {"epochs": 30}, "a": 1, "b": 2}))
    other.write_text(json.dumps({"options": {"epochs": 1}, "c": 3}))
    cache = Cache(mine)
    cache.get_or_run("options", lambda: {"epochs": 30})
    cache.get_or_run("b", lambda: 20)
    assert cache.absorb(share, must_match=("options",)) == 1
    assert json.loads(mine.read_text()) == {"options": {"epochs": 30}, "a": 1, "b": 20}
    assert cache.absorb(share, must_match=("options",)) == 0
    with pytest.raises(SystemExit, match="other settings \\(options\\)"):
        cache.absorb(other, must_match=("options",))
    assert "c" not in json.loads(mine.read_text())
