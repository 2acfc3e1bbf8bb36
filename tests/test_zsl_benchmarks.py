"""The zero-shot benchmark scripts run end to end and write their tables (tiny settings)."""
from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import numpy as np
import torch
import pytest
from benchmark_scripts import load_script
from zsl_synthetic import linear_problem
import scipy.io as sio

from fewzero.data.xlsa17 import read_att_splits

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ["FEWZERO_DATA"])


pytestmark = pytest.mark.usefixtures("one_torch_thread")





def test_gbu_table_from_a_written_res101(tmp_path, data_root):
    """Real CUB att_splits.mat, features written here: linear in the class attributes plus noise."""
    folder = tmp_path / "xlsa17" / "CUB"
    folder.mkdir(parents=True)
    for name in ("att_splits.mat", "valclasses1.txt"):
        (folder / name).symlink_to(DATA / "xlsa17" / "CUB" / name)
    splits = read_att_splits(folder / "att_splits.mat")
    files = [line.split()[1] for line in (DATA / "cub/CUB_200_2011/images.txt").read_text().splitlines()]
    labels = np.array([splits["names"].index(f) for f in sorted(f.split("/")[0] for f in files)])
    rng = np.random.default_rng(0)
    projection = rng.normal(size=(24, splits["att"].shape[0]))
    features = projection @ splits["att"][:, labels] + 0.02 * rng.normal(size=(24, labels.size))
    sio.savemat(folder / "res101.mat", {"features": features, "labels": labels[:, None] + 1})
    out = tmp_path / "gbu"
    results = load_script("zsl_gbu").main(["--data-root", str(tmp_path), "--methods", "eszsl", "sae", "--no-tune",
                                       "--out", str(out)])
    assert min(r["t1"] for r in results["CUB"].values()) > 30  # 50 unseen classes: chance is 2 %
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["datasets"]["CUB"] == {"seen": 150, "unseen": 50, "train": 7057, "test_seen": 1764,
                                         "test_unseen": 2967, "feature_dim": 24}
    assert report["provenance"]["commit"] and report["published"]["results"]["ale"]["CUB"] == [54.9, 23.7, 62.8, 34.4]
    table = out.with_suffix(".md").read_text()
    assert "| eszsl |" in table and "| sae |" in table and "53.9" in table


def test_gbu_without_features_says_what_to_do(tmp_path):
    with pytest.raises(SystemExit, match="no res101.mat found"):
        load_script("zsl_gbu").main(["--data-root", str(tmp_path), "--datasets", "SUN", "--out", str(tmp_path / "x")])


def test_cub50_benchmark_writes_ablation_proposed_split_headline_seeds_and_random_splits_and_resumes(tmp_path, data_root):
    out, cache = tmp_path / "zsl_cub50", tmp_path / "cache.json"
    argv = ["--image-size", "16", "--epochs", "1", "--backbone", "conv4", "--no-bbox-crop", "--methods", "eszsl", "dap", "--no-tune",
            "--ablation", "CE", "CE + attributes", "--ablation-methods", "eszsl", "--splits", "1",
            "--semantics", "attributes", "--headline-seeds", "1",
            "--out", str(out), "--cache", str(cache)]
    script = load_script("zsl_cub")
    script.main(argv)
    report = json.loads(out.with_suffix(".json").read_text())
    assert set(report["ablation"]) == {"CE", "CE + attributes"}
    assert report["chosen_features"]["heads"] in ("classes", "classes+attributes")
    assert set(report["results"]) == {"attributes"}
    for kind in report["results"]:
        assert set(report["results"][kind]) == {"eszsl", "dap"}
        r = report["results"][kind]["eszsl"]
        assert 0 <= r["t1"] <= 100 and abs(r["h"] - 2 * r["u"] * r["s"] / max(r["u"] + r["s"], 1e-9)) < 1e-6
        assert Path(r["curve_png"]).is_file()
    assert all(len(runs) == 2 for runs in report["headline"].values()) and report["headline"]
    assert set(report["splits"]) == {"1"}
    assert report["splits"]["1"]["unseen_classes"] != report["dataset"]["unseen_classes"]
    assert report["features"]["epochs"] == 1 and report["features"]["input_size"] == [3, 16, 16]
    assert report["dataset"]["seen"] == 40 and report["dataset"]["unseen"] == 10
    table = out.with_suffix(".md").read_text()
    assert re.search(r"Best T1: [0-9.]+ \(\w+, [\w+]+\); best calibrated H: [0-9.]+ \(\w+, [\w+]+\)", table)
    for part in ("different protocol", "| eszsl |", "## Provenance", "## Which feature heads", "random 40/10",
                 "## Headline rows over 2 seeds"):
        assert part in table
    # the table's command line scores its cell again, on the features the run cached
    command = re.search(r"A cell from the command line, e.g. (\w+) .*?: `fewzero (eval [^`]*)`", table)
    from fewzero.cli import main as fewzero_main

    records = tmp_path / "cell.json"
    assert fewzero_main([*shlex.split(command.group(2)), "--data-root", str(data_root), "--records", str(records),
                         "--quiet"]) == 0
    cell = report["results"]["attributes"][command.group(1)]
    assert json.loads(records.read_text())["t1"] == pytest.approx(cell["t1"], abs=1e-9)
    # a second run takes every result from the cache: nothing is trained or evaluated again
    script.run_learners = lambda *a, **k: pytest.fail("a cached result was computed again")
    script.main(argv)
    assert json.loads(out.with_suffix(".json").read_text())["splits"] == report["splits"]


def test_a_run_of_some_parts_keeps_the_record_of_the_runs_whose_parts_it_keeps():
    earlier_runs = load_script("zsl_cub").earlier_runs
    first = {"provenance": {"command": "all", "parts": ["ablation", "proposed", "splits"]}, "note": "n"}
    assert earlier_runs(first, ["ablation", "proposed", "splits"]) == []
    assert earlier_runs(first, ["splits"]) == [{"command": "all", "parts": ["ablation", "proposed", "splits"],
                                               "note": "n"}]
    second = {"provenance": {"command": "splits", "parts": ["splits"]}, "note": "",
              "earlier_runs": earlier_runs(first, ["splits"])}
    assert [r["command"] for r in earlier_runs(second, ["splits"])] == ["all"]  # the redone splits run is dropped
    old = {"provenance": {"command": "old"}}  # recorded no parts: kept, unless every part is redone
    assert [r["command"] for r in earlier_runs(old, ["splits"])] == ["old"]
    assert earlier_runs(old, ["ablation", "proposed", "splits"]) == []
    # an older record without parts, whose command names them: a run of those parts drops it
    older = {"provenance": {"command": "python benchmarks/zsl_cub.py --parts splits --note 'a b'"}}
    assert earlier_runs(older, ["splits"]) == [] and len(earlier_runs(older, ["proposed"])) == 1
    parts_of_run = load_script("zsl_cub").parts_of_run
    assert parts_of_run({"command": "x --parts ablation proposed --headline-best-only"}) == ["ablation", "proposed"]
    assert parts_of_run({"command": "x --parts"}) == ["?"] and parts_of_run({"parts": ["splits"]}) == ["splits"]


def test_cub50_split_ids_outside_the_splits_are_refused_before_any_work(tmp_path, capsys):
    script = load_script("zsl_cub")
    script.run_learners = lambda *a, **k: pytest.fail("work started")
    with pytest.raises(SystemExit) as stopped:
        script.main(["--parts", "splits", "--splits", "2", "--split-ids", "3", "--out", str(tmp_path / "x"),
                     "--cache", str(tmp_path / "c.json")])
    assert stopped.value.code == 2 and "--split-ids must lie in 1..2" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()


def test_the_cub50_report_lists_the_grids_its_run_searched():
    grid_lines = load_script("zsl_cub_report").grid_lines
    tuned = {"config": {"tune": True, "grids": {"sae": {"lam": [0.05, 0.2]}, "ale": {"lr": [1e-4], "weight_decay": [0]}}}}
    assert grid_lines(tuned)[-2:] == ["- ale: lr [0.0001]; weight_decay [0]", "- sae: lam [0.05, 0.2]"]
    assert grid_lines({"config": {"tune": False, "grids": tuned["config"]["grids"]}}) == []
    assert grid_lines({"config": {"tune": True}}) == []  # a run before grids were recorded


def test_a_cub50_run_without_the_proposed_split_writes_its_json_and_no_table(tmp_path, capsys):
    """A process that ran a share of the random splits into its own --out has no proposed-split results."""
    load_script("zsl_cub").write_report(tmp_path / "share", {"splits": {"4": {}}, "config": {"tune": True}})
    assert json.loads((tmp_path / "share.json").read_text())["splits"] == {"4": {}}
    assert not (tmp_path / "share.md").exists() and "needs the proposed split's results" in capsys.readouterr().out


def test_every_zero_shot_learner_of_the_table_ships_the_config_the_plain_command_reads(capfd, monkeypatch):
    """configs/<learner>_cub50.yaml is what benchmarks/zsl_configs.py writes from zsl_cub50.json, and
    ``fewzero eval --method NAME`` builds NAME from it (its learner settings and the table's features)."""
    import fewzero.cli.zero_shot as zero_shot
    from fewzero.cli import main
    from fewzero.errors import FewzeroError

    configs = load_script("zsl_configs")
    table = json.loads(configs.TABLE.read_text())
    wanted = configs.configs(table)
    assert {p.name for p in wanted} == {f"{m}_cub50.yaml" for m in [*table["results"]["attributes"], "ensemble"]} | {
        "ensemble_cub50_both.yaml"}
    assert len(table["results"]["attributes"]) >= 10
    for path, text in wanted.items():
        assert path.read_text() == text, f"{path.name}: run python benchmarks/zsl_configs.py"
    built, options = {}, []
    monkeypatch.setattr(zero_shot, "load_data", lambda *a, **kw: options.append(kw) or linear_problem(seed=0))

    def stop(name, **kwargs):  # what the command would build; no need to fit it
        built[name] = kwargs
        raise FewzeroError("stop here")
    monkeypatch.setattr(zero_shot.ZERO_SHOT, "create", stop)
    for method, row in table["results"]["attributes"].items():
        assert main(["eval", "--method", method, "--quiet"]) == 2
        assert "stop here" in capfd.readouterr().err
        assert {k: built[method][k] for k in row["params"]} == row["params"]
        assert set(load_script("zsl_common").FIXED.get(method, {})) <= set(built[method])
    features = {k: table["chosen_features"][k] for k in ("heads", "weighting")}
    assert len(options) == len(built) and all({k: o[k] for k in features} == features for o in options)


def test_hyper_parameters_are_chosen_on_the_tuning_data_and_scored_on_the_data():
    """run_learners(data, tune_data=...) (zsl_cub --val-blind): the grid point is the one tune_data's validation
    classes choose, and the reported T1 is that learner fitted and tested on data."""
    from fewzero.evaluate_zsl import evaluate_zero_shot

    common = load_script("zsl_common")
    data, tune_data = linear_problem(seed=0, noise=2.0), linear_problem(seed=5, noise=2.0)
    chosen = {seed: common.tune("eszsl", d)["params"] for seed, d in ((0, data), (5, tune_data))}
    result = common.run_learners(data, 0, True, names=["eszsl"], tune_data=tune_data)["eszsl"]
    assert result["params"] == chosen[5]
    assert result["t1"] == evaluate_zero_shot(common.make_learner("eszsl", chosen[5], 0), data, seed=0).t1
    assert common.run_learners(data, 0, True, names=["eszsl"])["eszsl"]["params"] == chosen[0]


def test_val_blind_runs_tune_on_a_backbone_without_the_validation_classes_and_test_on_the_full_one(data_root):
    from types import SimpleNamespace

    script = load_script("zsl_cub")
    options = {"image_size": 16, "epochs": 1, "bbox_crop": False, "backbone": "resnet_small", "seed": 0,
               "text_source": "both"}
    args = SimpleNamespace(data_root=str(data_root), no_tune=False)
    plain = script.Runner(args, options, cache=None)
    blind = script.Runner(args, {**options, "val_blind": True}, cache=None)
    assert plain.tuning_data("attributes", "classes", "fixed") is None
    tuning, test = (blind.tuning_data("attributes", "classes", "fixed"), blind.data("attributes", "classes", "fixed"))
    assert tuning.info["val_blind"] and not test.info["val_blind"]
    assert torch.equal(tuning.val_classes, test.val_classes) and not torch.equal(tuning.train_x, test.train_x)
    assert torch.equal(test.train_x, plain.data("attributes", "classes", "fixed").train_x)
