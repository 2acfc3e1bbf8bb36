"""The catalogue of bad inputs through the CLI, continued: config (names, YAML files, ``--set``, numbers), device,
and the run folder (``--out``, ``--records``, ``--resume``). The rule of the house and the data and checkpoint
cases are in tests/test_bad_inputs.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import bad_input_helpers
from bad_input_helpers import cache_files, eval_args, fails, train_args
from fewzero.checkpoint import build_learner, save_checkpoint
from fewzero.cli import main
from fewzero.config import load_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_isolated = bad_input_helpers.isolated  # autouse: each case gets its own empty cache, no data, no network
checkpoints = bad_input_helpers.checkpoints


# --------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("extra,fragments", [
    (["--set", "backbone=resnet99"], ["unknown backbone 'resnet99'", "conv4"]),
    (["--dataset", "mnist"], ["unknown dataset 'mnist'", "omniglot"]),
    (["--set", "colour=red"], ["unknown config key 'colour'", "valid keys are"]),
    (["--set", "learner.distanse=cosine"], ["learner.distanse", "valid keys are distance"]),
], ids=["backbone", "dataset", "key", "learner-key"])
def test_unknown_names(capfd, tmp_path, checkpoints, extra, fragments):
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, *extra), *fragments)


def test_unknown_method(capfd, tmp_path):
    fails(capfd, tmp_path, ["eval", "--method", "protonot", "--quiet"], "unknown method 'protonot'", "protonet")


@pytest.mark.parametrize("text,fragment", [("[]\n", "must hold a mapping"), ("- lr: 1\n", "must hold a mapping"),
                                           ("42\n", "must hold a mapping"), ("false\n", "must hold a mapping")],
                         ids=["empty-list", "list", "number", "false"])
def test_yaml_that_is_not_a_mapping(capfd, tmp_path, checkpoints, text, fragment):
    (tmp_path / "c.yaml").write_text(text)
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, "--config", tmp_path / "c.yaml"),
          str(tmp_path / "c.yaml"), fragment)


def test_config_path_that_is_a_directory(capfd, tmp_path, checkpoints):
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, "--config", tmp_path),
          "is a directory", absent=("does not exist",))


def test_config_that_is_not_utf8(capfd, tmp_path, checkpoints):
    (tmp_path / "latin.yaml").write_bytes("method: protonet\n# réglages\n".encode("latin-1"))
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, "--config", tmp_path / "latin.yaml"),
          "not UTF-8")


def test_empty_set_value_is_an_error(capfd, tmp_path, checkpoints):
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, "--set", "test_episodes="), "--set",
          "test_episodes=", "no value")


@pytest.mark.parametrize("extra,fragments", [
    (["--lr", "nan"], ["'lr'", "--lr", "nan"]),
    (["--lr", "inf"], ["'lr'", "--lr"]),
    (["--set", "lr=.nan"], ["'lr'", "--set lr=.nan"]),
    (["--lr", "-0.001"], ["'lr'", "--lr", "> 0"]),
    (["--set", "weight_decay=-1"], ["'weight_decay'", "--set weight_decay=-1", ">= 0"]),
    (["--set", "lr_gamma=-0.5"], ["'lr_gamma'", "--set lr_gamma=-0.5", "> 0"]),
    (["--set", "lr_gamma=0"], ["'lr_gamma'", "> 0"]),
    (["--set", "max_minutes=-1"], ["'max_minutes'", "--set max_minutes=-1"]),
    (["--seed", "-1"], ["'seed'", "--seed", ">= 0"]),
    (["--train-query", "0"], ["'train_query'", "--train-query", ">= 1"]),
    (["--train-way", "0"], ["'train_way'", "--train-way"]),
    (["--train-shot", "-2"], ["'train_shot'", "--train-shot"]),
    (["--episodes", "0"], ["'episodes'", "--episodes"]),
    (["--set", "test_query=0"], ["'test_query'", "--set test_query=0"]),
], ids=["lr-nan", "lr-inf", "set-lr-nan", "lr-negative", "weight-decay", "lr-gamma-negative", "lr-gamma-zero",
        "max-minutes", "seed", "train-query", "train-way", "train-shot", "episodes", "test-query"])
def test_bad_training_numbers_fail_before_training(capfd, tmp_path, tiny_omniglot, extra, fragments):
    fails(capfd, tmp_path, train_args(tmp_path / "run", tiny_omniglot, *extra), *fragments,
          absent=("protonet_omniglot.yaml",))
    assert not cache_files(tmp_path), "no data was decoded"


def test_train_query_zero_is_not_blamed_on_the_learning_rate(capfd, tmp_path, tiny_omniglot):
    fails(capfd, tmp_path, train_args(tmp_path / "run", tiny_omniglot, "--train-query", "0"), "train_query",
          absent=("--lr", "lower", "loss became"))


@pytest.mark.parametrize("extra,fragments", [
    (["--query", "0"], ["'test_query'", "--query"]),
    (["--set", "test_query=0"], ["'test_query'", "--set test_query=0"]),
    (["--way", "0"], ["'test_way'", "--way"]),
    (["--way", "-3"], ["'test_way'", "--way"]),
    (["--shot", "0"], ["'test_shot'", "--shot"]),
    (["--episodes", "-1"], ["'test_episodes'", "--episodes"]),
    (["--seed", "-1"], ["'test_seed'", "--seed"]),
], ids=["query", "set-query", "way-zero", "way-negative", "shot", "episodes", "seed"])
def test_bad_eval_numbers_fail_before_any_training(capfd, tmp_path, extra, fragments):
    # reptile has no packaged model: a check that came after "find or train a model" would say so instead
    fails(capfd, tmp_path, ["eval", "--method", "reptile", "--quiet", "--train-if-missing", *extra], *fragments,
          absent=("reptile_omniglot.yaml", "no trained", "download"))
    assert not cache_files(tmp_path), "nothing was trained or decoded"


def test_way_larger_than_the_classes(capfd, tmp_path, tiny_omniglot, checkpoints):
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tiny_omniglot, "--way", "9"),
          "n_way=9 is larger than the 8 classes", "at most 8")


def test_shot_plus_query_larger_than_the_images(capfd, tmp_path, tiny_omniglot, checkpoints):
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tiny_omniglot, "--shot", "10", "--query", "11"),
          "has 20 items but n_shot + n_query = 21")


def test_errors_name_where_the_value_came_from(capfd, tmp_path, checkpoints):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("method: protonet\ntest_episodes: 10\n")
    bad.write_text("method: protonet\nlr: -1\n")
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, "--config", bad), "'lr'", str(bad))
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, "--config", good, "--set", "lr=-1"),
          "'lr'", "--set lr=-1", absent=(str(good),))
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, "--config", good, "--way", "0"),
          "'test_way'", "--way", absent=(str(good), "--set"))


# --------------------------------------------------------------------------------------------- run folder


@pytest.fixture
def finished_run(tmp_path) -> Path:
    """A run folder holding best.pt and last.pt of a protonet config (untrained weights; no training needed)."""
    config = load_config("protonet", "omniglot", overrides={"backbone_args.hidden": 8, "train_way": 5,
                                                            "episodes": 2, "val_every": 2, "val_episodes": 2})
    payload = {"config": config.to_dict(), "in_channels": 1, "model": build_learner(config).state_dict()}
    out = tmp_path / "run"
    save_checkpoint(out / "best.pt", payload)
    save_checkpoint(out / "last.pt", payload)
    return out


@pytest.mark.parametrize("keep", ["best.pt", "last.pt", "both"])
def test_train_never_overwrites_a_run(capfd, tmp_path, tiny_omniglot, finished_run, keep):
    for name in ("best.pt", "last.pt"):
        if keep not in (name, "both"):
            (finished_run / name).unlink()
    fails(capfd, tmp_path, train_args(finished_run, tiny_omniglot), "already holds a run", "--resume",
          "--overwrite")


def test_overwrite_replaces_a_run(capfd, tmp_path, tiny_omniglot, finished_run):
    before = (finished_run / "best.pt").read_bytes()
    assert main([str(a) for a in train_args(finished_run, tiny_omniglot, "--overwrite")]) == 0, capfd.readouterr()
    assert (finished_run / "best.pt").read_bytes() != before


@pytest.mark.parametrize("where", ["file", "proc"])
def test_unusable_out_fails_before_loading_data(capfd, tmp_path, tiny_omniglot, where):
    out = tmp_path / "taken.txt" if where == "file" else Path("/proc/fewzero-run")
    if where == "file":
        out.write_text("my notes")
    fails(capfd, tmp_path, train_args(out, tiny_omniglot), "--out", str(out))
    assert not cache_files(tmp_path), "no data was loaded"


@pytest.mark.parametrize("where", ["folder", "proc"])
def test_unusable_records_fail_before_evaluation(capfd, tmp_path, tiny_omniglot, checkpoints, where):
    records = tmp_path if where == "folder" else Path("/proc/fewzero-records.json")
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tiny_omniglot, "--records", records), "--records",
          str(records))
    assert not cache_files(tmp_path), "no data was loaded"


def test_resume_with_no_run(capfd, tmp_path, tiny_omniglot):
    fails(capfd, tmp_path, ["train", "--method", "protonet", "--out", tmp_path / "new", "--resume", "--quiet",
                            "--data-root", tiny_omniglot], "nothing to resume")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("extra,flag", [(["--lr", "0.5"], "--lr"), (["--method", "maml"], "maml"),
                                        (["--train-way", "3"], "--train-way"), (["--set", "seed=4"], "seed")],
                         ids=["lr", "method", "train-way", "set-seed"])
def test_resume_with_a_conflicting_flag(capfd, tmp_path, tiny_omniglot, finished_run, extra, flag):
    argv = ["train", "--out", finished_run, "--resume", "--quiet", "--data-root", tiny_omniglot]
    argv = argv + (extra if "--method" in extra else ["--method", "protonet", *extra])
    fails(capfd, tmp_path, argv, flag)


def test_eval_without_any_model_names_the_train_command(capfd, tmp_path):
    fails(capfd, tmp_path, ["eval", "--method", "reptile", "--quiet"], "fewzero train --method reptile")
    assert not cache_files(tmp_path), "nothing was trained"
