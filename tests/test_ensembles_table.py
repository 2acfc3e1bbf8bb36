"""benchmarks/ensembles_table.py: a run of one part keeps the other part's results, and names only the runs behind
what it kept."""
from __future__ import annotations

import json
import shutil

import pytest

from benchmark_scripts import BENCHMARKS, load_script


def test_a_run_of_one_part_keeps_the_other_part_and_only_the_runs_behind_it(tmp_path, monkeypatch):
    table = load_script("ensembles_table")
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the table imports its helpers when it writes
    committed = BENCHMARKS.parent / "paper_results" / "ensembles.json"
    shutil.copyfile(committed, tmp_path / "ensembles.json")
    stored = json.loads(committed.read_text())
    assert table.parts_of({"command": "python benchmarks/ensembles.py --part cub50 --quiet"}) == ["cub50"]
    assert table.parts_of({"command": "python benchmarks/ensembles.py"}) == ["omniglot", "cub50"]
    assert table.parts_of({"parts": ["omniglot"], "command": "x --part cub50"}) == ["omniglot"]
    meta = {"command": "python benchmarks/ensembles.py --part omniglot", "commit": "c", "date": "d"}
    table.write_table(tmp_path, {"omniglot": stored["results"]["omniglot"]}, meta)
    written = json.loads((tmp_path / "ensembles.json").read_text())
    cub_parts = sorted(set(stored["results"]) - {"omniglot"})  # cub50, and cub50_both once it has run
    assert "cub50" in cub_parts and set(written["results"]) == {"omniglot", *cub_parts}
    assert all(written["results"][part] == stored["results"][part] for part in cub_parts)
    kept = written["provenance"]["previous_runs"]
    # the last run of each CUB-50 part; no superseded one
    assert sorted(part for run in kept for part in table.parts_of(run)) == cub_parts
    recorded = [*stored["provenance"].get("previous_runs", []), stored["provenance"]]
    for part in cub_parts:
        last = max((r for r in recorded if part in table.parts_of(r)), key=lambda r: r["date"])
        assert last in kept
    assert written["provenance"]["parts"] == ["omniglot"]
    markdown = (tmp_path / "ensembles.md").read_text()
    assert markdown.count("- earlier run:") == len(kept) and "--part omniglot --quiet --note 2 CPU" not in markdown


def test_the_runs_behind_a_table_are_the_last_of_each_part():
    table = load_script("ensembles_table")
    runs = [{"command": "e --part cub50", "n": 1}, {"command": "e", "n": 2}, {"command": "e --part omniglot", "n": 3},
            {"command": "e --part cub50", "n": 4}]
    assert [r["n"] for r in table.runs_behind(runs, [])] == [3, 4]
    assert [r["n"] for r in table.runs_behind(runs, ["omniglot"])] == [4]
    assert [r["n"] for r in table.runs_behind(runs[:3], ["omniglot"])] == [2]  # run 2 wrote the CUB-50 part last
    assert table.runs_behind(runs, ["omniglot", "cub50"]) == []


def test_a_cub_run_on_other_features_or_members_keeps_the_superseded_ones_for_the_record():
    ensembles = load_script("ensembles")
    table = load_script("ensembles_table")
    stored = json.loads((BENCHMARKS.parent / "paper_results" / "ensembles.json").read_text())["results"]["cub50"]
    ce = {k: v for k, v in stored.items() if k not in ("features", "earlier")}  # a run before features were recorded
    ce["run"] = {"command": "python benchmarks/ensembles.py --part cub50", "commit": "a", "date": "d"}
    chosen = {"heads": "classes+attributes", "weighting": "fixed", "why": "validation"}
    earlier = ensembles.earlier_cub_runs({**ce, "first_run": {c: {"t1": 1.0, "h": 2.0, "calibrated_h": 3.0}
                                                              for c in ("mean_prob", "stacking")}},
                                         chosen, ce["params"])
    assert [e["what"].split(":")[0] for e in earlier] == ["first run", f"features classes (fixed weights), members "
                                                                       f"{', '.join(ce['params'])}"]
    best = max(ce["singles"], key=lambda n: ce["singles"][n]["t1"])
    assert earlier[1]["best_single"] == {"name": best, "t1": ce["singles"][best]["t1"]}
    assert earlier[1]["mean_prob"]["t1"] == ce["mean_prob"]["t1"] and earlier[1]["run"]["commit"] == "a"
    same = {**{k: v for k, v in ce.items() if k != "first_run"}, "features": chosen, "earlier": earlier}
    assert ensembles.earlier_cub_runs(same, chosen, ce["params"]) == earlier  # a rerun of the same ensemble
    member, retuned = next(iter(ce["params"])), {"a_new_choice": 1}
    kept = ensembles.earlier_cub_runs(same, chosen, {**ce["params"], member: retuned})  # same members, new choices
    assert kept[:-1] == earlier and kept[-1]["what"].endswith(
        f", member hyper-parameters {member} {json.dumps(ce['params'][member])}")
    text = "\n".join(table._cub({**same, "features": chosen}))
    assert "Features: the CUB-50 backbone with the classes+attributes heads" in text
    assert f"members {', '.join(ce['params'])} (`python benchmarks/ensembles.py --part cub50` at a, d). Test: " \
           f"mean_prob T1 {ce['mean_prob']['t1']:.1f}" in text and text.count("\n- first run: ") == 1
    assert ensembles.last_run_of({"command": "e --part omniglot", "previous_runs": [
        {"command": "e --part cub50", "commit": "x", "date": "d1"}, {"command": "e", "commit": "y", "date": "d2"}]},
        "cub50") == {"command": "e", "commit": "y", "date": "d2"}


def test_the_cub50_ensemble_config_is_the_benchmarks_ensemble():
    """configs/ensemble_cub50.yaml lists the benchmark's members with the hyper-parameters and features zsl_cub50
    chose on validation classes, so the command gives what paper_results/ensembles.md reports."""
    import yaml

    ensembles = load_script("ensembles")
    root = BENCHMARKS.parent
    config = yaml.safe_load((root / "configs" / "ensemble_cub50.yaml").read_text())
    table = json.loads((root / "paper_results" / "zsl_cub50.json").read_text())
    chosen = table["results"]["attributes"]
    assert [m["method"] for m in config["learner"]["members"]] == [m for m in ensembles.ZSL_MEMBERS if m in chosen]
    fixed = load_script("zsl_common").FIXED
    assert {m["method"]: m.get("params", {}) for m in config["learner"]["members"]} == {
        m: {**fixed.get(m, {}), **chosen[m]["params"]} for m in ensembles.ZSL_MEMBERS if m in chosen}
    assert fixed["gcnzsl"]["graph"]  # the table's gcnzsl has its taxonomy graph, not the learner's default k-NN one
    assert config["data"] == {k: table["chosen_features"][k] for k in ("heads", "weighting")}


def test_the_cub50_members_are_cached_under_their_hyper_parameters():
    key = load_script("ensembles").cub_member_key
    assert key("cvae", {}) == "cvae" and key("cvae", {"epochs": 15, "cls_weight": 1.0}) == key(
        "cvae", {"cls_weight": 1.0, "epochs": 15}) != key("cvae", {"cls_weight": 0.1, "epochs": 15})


def test_the_omniglot_parts_are_cached_under_the_members_weights_and_settings():
    """A packaged member replaced by other weights (or given other settings) is scored afresh, not read back."""
    ensembles = load_script("ensembles")
    members = {"protonet": ("w1", {}), "simpleshot": ("p1", {"normalisation": "l2n"})}
    digest = ensembles.members_digest(members)
    assert digest == ensembles.members_digest(dict(reversed(members.items())))
    assert digest != ensembles.members_digest({**members, "simpleshot": ("p2", {"normalisation": "l2n"})})
    assert digest != ensembles.members_digest({**members, "simpleshot": ("p1", {"normalisation": "cl2n"})})


def test_the_omniglot_table_says_when_its_members_weights_have_changed(monkeypatch):
    table = load_script("ensembles_table")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from result_cache import members_digest, weights_digest

    members = {"protonet": {"checkpoint": "fewzero/pretrained/protonet_omniglot.pt", "settings": {}}}
    current = members_digest({"protonet": (weights_digest(BENCHMARKS.parent / members["protonet"]
                                                                     ["checkpoint"]), {})})
    assert table._stale({"members": members, "members_digest": current}) == []
    assert "other weights" in table._stale({"members": members, "members_digest": "0" * 12})[0]
    assert "did not record" in table._stale({"members": members})[0]


def test_a_combiner_share_writes_its_cache_only_and_a_full_run_absorbs_it(tmp_path, monkeypatch, capsys):
    """--combiners runs a share of the CUB-50 part into its own --cache and writes no table; --absorb takes a
    share's results into the run's cache before it starts."""
    import sys

    ensembles = load_script("ensembles")
    calls = []

    def fake_run(args, cache, previous=None, semantics=("attributes",)):
        calls.append((list(args.combiners), semantics))
        cache.get_or_run(f"cub50/{args.combiners[0]}", lambda: {"t1": 1.0})
        return {}
    monkeypatch.setattr(ensembles, "run_cub50", fake_run)
    share = tmp_path / "share.json"
    monkeypatch.setattr(sys, "argv", ["ensembles.py", "--part", "cub50", "--combiners", "stacking", "--cache",
                                      str(share), "--out", str(tmp_path / "out")])
    ensembles.main()
    assert calls == [(["stacking"], ("attributes",))] and not (tmp_path / "out").exists()
    assert "the table needs both combiners" in capsys.readouterr().out
    main_cache = tmp_path / "main.json"
    monkeypatch.setattr(sys, "argv", ["ensembles.py", "--part", "cub50", "--combiners", "mean_prob", "--cache",
                                      str(main_cache), "--absorb", str(share), "--out", str(tmp_path / "out")])
    ensembles.main()
    assert set(json.loads(main_cache.read_text())) == {"cub50/stacking", "cub50/mean_prob"}
    monkeypatch.setattr(sys, "argv", ["ensembles.py", "--part", "both", "--combiners", "stacking"])
    with pytest.raises(SystemExit, match="pass --part cub50"):
        ensembles.main()


def test_the_cross_semantics_part_renders_beside_the_attribute_one_and_says_when_it_was_added():
    """A cub50_both part gets its own section, first, with its members' names and the note that it came after the
    attribute-only result; the attribute section is unchanged."""
    table = load_script("ensembles_table")
    stored = json.loads((BENCHMARKS.parent / "paper_results" / "ensembles.json").read_text())["results"]["cub50"]
    both = json.loads(json.dumps(stored))
    both["semantics"] = ["attributes", "text"]
    both["singles"]["ale@text"] = {**both["singles"]["ale"], "t1": 1.0}
    both["zsl_table_t1"]["ale@text"] = 1.0
    lines = table._cub(both)
    text = "\n".join(lines)
    assert lines[0] == "## CUB-50 zero-shot (members on attributes and on text)" and table.CROSS_SEMANTICS in text
    assert "| ale@text | 1.0 | - | - |" in text
    plain = "\n".join(table._cub(stored))
    assert plain.startswith("## CUB-50 zero-shot (attributes)") and table.CROSS_SEMANTICS not in plain


def test_the_cross_semantics_ensemble_config_is_the_benchmarks_cub50_both_part():
    """configs/ensemble_cub50_both.yaml: each learner on attributes, then on text, with the values zsl_cub50 chose
    for it on that semantics, named as the benchmark names them, on attributes+text data."""
    import yaml

    ensembles, fixed = load_script("ensembles"), load_script("zsl_common").FIXED
    root = BENCHMARKS.parent
    config = yaml.safe_load((root / "configs" / "ensemble_cub50_both.yaml").read_text())
    table = json.loads((root / "paper_results" / "zsl_cub50.json").read_text())
    wanted = [(m, sem) for sem in ensembles.CUB_PARTS["cub50_both"] for m in ensembles.ZSL_MEMBERS
              if m in table["results"][sem]]
    assert config["semantics"] == "attributes+text" and len(wanted) == 20
    assert config["learner"]["names"] == [m if sem == "attributes" else f"{m}@text" for m, sem in wanted]
    assert [(m["method"], m["semantics"], m["params"]) for m in config["learner"]["members"]] == [
        (m, sem, {**fixed.get(m, {}), **table["results"][sem][m]["params"]}) for m, sem in wanted]
