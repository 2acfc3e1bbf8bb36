"""The command line through subprocess, and in-process (the same ``main``, without a second torch import per case)
for every bad input of the foundation issue."""
import os
import subprocess
import sys

import pytest

from fewzero.checkpoint import build_learner, save_checkpoint
from fewzero.config import load_config

from bad_input_helpers import run_in_process


def run(*args, env=None, cwd=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "fewzero", *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=600)


@pytest.fixture
def run_here(capfd, monkeypatch):
    """``run`` in this process: ``main(args)`` with ``env`` set, as a ``CompletedProcess``."""
    def call(*args, env=None):
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        return subprocess.CompletedProcess(args, *run_in_process(capfd, args))
    return call


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    # stderr may also carry a (cleared) progress bar; the error itself is one line, the last one
    lines = [line for line in result.stderr.strip().splitlines() if "fewzero: error" in line]
    assert len(lines) == 1 and result.stderr.strip().splitlines()[-1].startswith("fewzero: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = load_config("protonet", "omniglot")
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return save_checkpoint(path, {"config": config.to_dict(), "model": build_learner(config).state_dict()})


def test_list_shows_every_kind_and_whether_the_data_is_found(data_root, tmp_path):
    result = run("list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["few-shot", "methods:", "anil,"] and "protonet" in lines[0]
    assert lines[1].startswith("zero-shot methods:") and "eszsl" in lines[1] and "protonet" not in lines[1]
    assert lines[2].startswith("adaptation methods:") and "dann" in lines[2] and "coral" in lines[2]
    assert "conv4" in lines[3] and "lenet" in lines[3]
    found = {line.split()[0]: line.split()[2] for line in lines if line.startswith("  ")}
    assert found["omniglot"] == "found" and found["cub50"] == "found" and found["xlsa17-AWA2"] == "not"
    assert found["mnist"] == found["mnistm"] == "found"
    assert "protonet_omniglot" in result.stdout and "maml_omniglot_20way" in result.stdout
    empty = run("list", "--data-root", str(tmp_path)).stdout
    assert "  omniglot       few-shot   not found" in empty


def test_eval_with_a_checkpoint_writes_records(data_root, checkpoint, tmp_path):
    records = tmp_path / "r.json"
    result = run("eval", "--method", "protonet", "--checkpoint", str(checkpoint), "--episodes", "20", "--quiet",
                 "--records", str(records))
    assert result.returncode == 0, result.stderr
    assert "5-way 1-shot accuracy:" in result.stdout and "N=20 episodes" in result.stdout
    assert records.is_file()


@pytest.mark.parametrize("mode", ["transductive", "inductive"])
def test_maml_eval_states_and_takes_the_batch_norm_mode(data_root, tmp_path, mode):
    config = load_config("maml", "omniglot")
    path = save_checkpoint(tmp_path / "maml.pt", {"config": config.to_dict(), "model": build_learner(config).state_dict()})
    result = run("eval", "--method", "maml", "--checkpoint", str(path), "--episodes", "5", "--quiet",
                 "--batch-norm", mode)
    assert result.returncode == 0, result.stderr
    assert f"batch norm {mode} (" in result.stdout and "3 inner step(s), inner_lr 0.4" in result.stdout


def test_eval_learner_settings_apply_to_the_saved_model(data_root, tmp_path):
    config = load_config("anil", "omniglot")
    path = save_checkpoint(tmp_path / "anil.pt", {"config": config.to_dict(), "model": build_learner(config).state_dict()})
    result = run("eval", "--method", "anil", "--checkpoint", str(path), "--episodes", "5", "--quiet",
                 "--set", "learner.test_inner_lr=0.05", "--set", "learner.test_inner_steps=2")
    assert result.returncode == 0, result.stderr
    assert "2 inner step(s), test_inner_lr 0.05 (meta-trained with inner_lr 0.4)" in result.stdout
    assert_user_error(run("eval", "--method", "anil", "--checkpoint", str(path), "--set", "learner.n_way=20"),
                      "learner settings ['n_way'] change the shape of the model")


@pytest.mark.parametrize("args,fragments", [
    (["--method", "protonot"], ["unknown method 'protonot'", "protonet"]),
    (["--method", "protonet", "--dataset", "mnist"], ["unknown dataset 'mnist'"]),
    (["--method", "protonet", "--split", "ravi"], ["unknown Omniglot split 'ravi'"]),
    (["--method", "protonet", "--shot", "15", "--query", "10"], ["has 20 items but n_shot + n_query = 25"]),
    (["--method", "protonet", "--way", "5000"], ["n_way=5000 is larger than the 1692 classes"]),
    (["--method", "protonet", "--set", "colour=red"], ["unknown config key 'colour'"]),
    (["--method", "protonet", "--set", "test_episodes=many"], ["'test_episodes'", "must be int"]),
    (["--method", "protonet", "--config", "nowhere.yaml"], ["nowhere.yaml does not exist"]),
    (["--method", "protonet", "--batch-norm", "inductive"], ["--batch-norm applies to the MAML family"]),
])
def test_bad_eval_inputs(data_root, checkpoint, args, fragments, run_here):
    assert_user_error(run_here("eval", *args, "--checkpoint", str(checkpoint), "--quiet"), *fragments)


def test_bad_checkpoints(checkpoint, tmp_path, run_here):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint.read_bytes()[:4000])
    for path, fragment in ((truncated, "unreadable or truncated"), (tmp_path / "none.pt", "does not exist")):
        assert_user_error(run_here("eval", "--method", "protonet", "--checkpoint", str(path)), fragment)


def test_missing_data_root_offline(checkpoint, tmp_path, run_here):
    result = run_here("eval", "--method", "protonet", "--checkpoint", str(checkpoint), "--data-root",
                 str(tmp_path / "empty"), env={"FEWZERO_OMNIGLOT_URL": "http://127.0.0.1:9/"})
    assert_user_error(result, "could not download", "--data-root / FEWZERO_DATA")
    assert not list(tmp_path.rglob("*.part"))


def test_corrupt_zip(data_root, checkpoint, tmp_path, run_here):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    (folder / "images_background.zip").write_bytes((data_root / "omniglot" / "images_background.zip").read_bytes()[:9999])
    (folder / "images_evaluation.zip").write_bytes(b"not a zip")
    result = run_here("eval", "--method", "protonet", "--checkpoint", str(checkpoint), "--data-root", str(tmp_path))
    assert_user_error(result, "corrupt or truncated")


def test_wrong_md5_on_download(checkpoint, tmp_path, run_here):
    from local_http import serve

    with serve({}, default=b"PK this is not the Omniglot archive") as url:
        result = run_here("eval", "--method", "protonet", "--checkpoint", str(checkpoint), "--data-root", str(tmp_path),
                     env={"FEWZERO_OMNIGLOT_URL": f"{url}/"})
    assert_user_error(result, "MD5 of", "expected 68d2efa1b9178cc56df9314c21c6e718")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "no partial file is left behind"


def test_train_then_resume_rules(data_root, tmp_path, run_here):
    out = tmp_path / "run"
    args = ["train", "--method", "protonet", "--out", str(out), "--episodes", "4", "--train-way", "5", "--quiet",
            "--set", "val_every=2", "--set", "val_episodes=5"]
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert "best validation accuracy" in result.stdout and (out / "best.pt").is_file()
    assert_user_error(run_here(*args), "already holds a run", "--resume")
    assert_user_error(run_here("train", "--method", "protonet", "--out", str(tmp_path / "new"), "--resume"),
                      "nothing to resume")
    assert_user_error(run_here("train", "--method", "protonet", "--out", str(tmp_path / "x"), "--set", "lr=-1"),
                      "'lr'", "> 0")
