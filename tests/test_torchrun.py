"""Real process groups started by torchrun: the same weights as one process, many machines (two agents on this
one), an elastic restart after SIGKILL, no orphans, one-line errors. Tiny models; each test a few seconds."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fewzero.checkpoint import load_checkpoint
from fewzero.config import load_config
from fewzero.pretrain import pretrain, pretrain_config
from fewzero.train import train

from bad_input_helpers import one_error_line

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads process children from /proc")]
# MLP backbone: every parameter gets a real gradient (conv biases in front of batch norm get rounding noise that
# Adam scales up to full steps, so runs differing only in float summation order drift apart there)
MAML = {"backbone": "mlp", "train_way": 5, "train_shot": 1, "train_query": 5, "episodes": 24, "meta_batch": 8,
        "val_every": 8, "val_episodes": 5, "max_minutes": None, "precision": "fp32"}
PROTONET = {"backbone": "mlp", "train_way": 5, "train_query": 5, "episodes": 16, "meta_batch": 4, "val_every": 8,
            "val_episodes": 5, "max_minutes": None, "lr_step": 8, "precision": "fp32",
            "learner.distance": "cosine"}  # squared distances ignore the output bias: Adam would step on its noise
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def as_flags(overrides: dict) -> list[str]:
    return [flag for key, value in overrides.items()
            for flag in ("--set", f"{key}={'null' if value is None else value}")]


def fewzero(*argv, launcher=("-m", "fewzero")) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *launcher, *map(str, argv)], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=120)


def assert_same_weights(a: Path, b: Path) -> None:
    one, other = load_checkpoint(a), load_checkpoint(b)
    assert one["episode" if "episode" in one else "epoch"] == other["episode" if "episode" in other else "epoch"]
    for key in one["model"]:
        torch.testing.assert_close(other["model"][key], one["model"][key], rtol=1e-4, atol=1e-5, msg=key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_follow_the_one_process_trajectory(data_root, tmp_path):
    """ProtoNet through the --nproc sugar: the same weights as one process, process 0 alone reports."""
    one = train(load_config("protonet", "omniglot", overrides=PROTONET), tmp_path / "one", progress=False)
    done = fewzero("train", "--method", "protonet", "--quiet", "--out", tmp_path / "two", "--nproc", "2",
                   *as_flags(PROTONET))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.count("best validation accuracy") == 1
    assert_same_weights(tmp_path / "one" / "last.pt", tmp_path / "two" / "last.pt")
    assert load_checkpoint(tmp_path / "two" / "last.pt")["processes"] == 2 and one["processes"] == 1


def test_a_one_process_run_resumes_on_two_under_torchrun(data_root, tmp_path):
    """MAML: 16 tasks in one process, the last 8 under `torchrun --standalone --nproc-per-node 2`."""
    train(load_config("maml", "omniglot", overrides=MAML), tmp_path / "one", progress=False)
    train(load_config("maml", "omniglot", overrides={**MAML, "episodes": 16}), tmp_path / "two", progress=False)
    done = fewzero("train", "--method", "maml", "--quiet", "--out", tmp_path / "two", "--resume", "--episodes", "24",
                   launcher=("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "fewzero"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("best validation accuracy") == 1
    assert_same_weights(tmp_path / "one" / "last.pt", tmp_path / "two" / "last.pt")
    assert load_checkpoint(tmp_path / "two" / "last.pt")["processes"] == 2


def test_two_machines_meet_at_a_c10d_endpoint(data_root, tmp_path):
    """Two torchrun agents (--nnodes 2, one process each) on this machine, as on two machines."""
    endpoint = f"localhost:{free_port()}"
    nodes = [subprocess.Popen([sys.executable, "-m", "fewzero", "train", "--method", "maml", "--quiet", "--out",
                               str(tmp_path / "two"), "--nproc", "1", "--nnodes", "2", "--rdzv-endpoint", endpoint,
                               "--rdzv-timeout", "60", *as_flags(MAML)],
                              cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(node.wait(timeout=120), *node.communicate()) for node in nodes]
    assert [rc for rc, _, _ in results] == [0, 0], results
    one = train(load_config("maml", "omniglot", overrides=MAML), tmp_path / "one", progress=False)
    assert one["episodes_done"] == 24
    assert_same_weights(tmp_path / "one" / "last.pt", tmp_path / "two" / "last.pt")


def _workers(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"fewzero" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _start_and_wait_for_a_checkpoint(out: Path, *flags: str) -> tuple[subprocess.Popen, list[int]]:
    overrides = {**MAML, "episodes": 240, "val_every": 40}
    process = subprocess.Popen([sys.executable, "-m", "fewzero", "train", "--method", "maml", "--quiet", "--out",
                                str(out), "--nproc", "2", *flags, *as_flags(overrides)],
                               cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "last.pt").is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (out / "last.pt").is_file(), process.communicate()
    return process, _workers(process.pid)


def test_a_killed_process_is_restarted_and_the_run_ends_as_if_nothing_happened(data_root, tmp_path):
    process, workers = _start_and_wait_for_a_checkpoint(tmp_path / "run", "--max-restarts", "1")
    assert len(workers) == 2
    os.kill(workers[1], signal.SIGKILL)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0 and err == "", err
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["episode"] == 240 and [r["restart"] for r in saved["resumes"]] == [1]
    train(load_config("maml", "omniglot", overrides={**MAML, "episodes": 240, "val_every": 40}), tmp_path / "one",
          progress=False)
    assert_same_weights(tmp_path / "one" / "last.pt", tmp_path / "run" / "last.pt")


def test_killing_the_launcher_leaves_no_process_and_no_folder_behind(data_root, tmp_path):
    before = {p for p in os.listdir(tempfile_dir()) if p.startswith(("fewzero-launch-", "torchelastic_"))}
    process, workers = _start_and_wait_for_a_checkpoint(tmp_path / "run")
    assert len(workers) == 2
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, workers))
    written = (tmp_path / "run" / "last.pt").stat().st_mtime_ns
    time.sleep(1.0)
    assert (tmp_path / "run" / "last.pt").stat().st_mtime_ns == written  # nothing writes into the run any more
    after = {p for p in os.listdir(tempfile_dir()) if p.startswith(("fewzero-launch-", "torchelastic_"))}
    assert after <= before


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()


def test_no_rendezvous_is_one_line_naming_the_endpoint(tmp_path):
    endpoint = f"localhost:{free_port()}"
    done = fewzero("train", "--method", "maml", "--quiet", "--out", tmp_path / "run", "--nnodes", "2", "--nproc", "1",
                   "--rdzv-endpoint", endpoint, "--rdzv-timeout", "1", *as_flags(MAML))
    line = one_error_line(done.returncode, done.stderr)
    assert endpoint in line and "--nnodes 2" in line
    assert not (tmp_path / "run").exists()


def test_pretraining_on_two_processes_matches_one(tiny_omniglot, tmp_path):
    """DistributedDataParallel over halves of each batch (an MLP: no batch norm, which is per process on CPU)."""
    # no random shifts: each process draws its own share of a batch's shifts, so augmented runs differ by design
    tiny = {"backbone": "mlp", "backbone_args.hidden": 8, "epochs": 2, "batch_size": 8, "val_episodes": 2,
            "precision": "fp32", "max_minutes": None, "lr": 0.01, "augment_shift": 0}
    pretrain(pretrain_config("omniglot", overrides=tiny), tmp_path / "one", data_root=tiny_omniglot, progress=False)
    done = fewzero("pretrain", "--quiet", "--out", tmp_path / "two", "--data-root", tiny_omniglot, "--nproc", "2",
                   *as_flags(tiny))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert_same_weights(tmp_path / "one" / "last.pt", tmp_path / "two" / "last.pt")
    assert load_checkpoint(tmp_path / "two" / "last.pt")["processes"] == 2


def test_the_zero_shot_feature_backbone_trains_the_same_on_two_processes(tmp_path, monkeypatch):
    """DistributedDataParallel over each batch of the feature backbone's training (tests/features_worker.py)."""
    from features_worker import tiny_network, train_tiny

    from fewzero.zsl import features

    monkeypatch.setattr(features, "_build", tiny_network)
    one, processes = train_tiny()
    assert processes == 1
    done = fewzero(tmp_path / "two.pt", launcher=("-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                                                  "2", str(REPO / "tests" / "features_worker.py")))
    assert done.returncode == 0, done.stderr
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    assert two["processes"] == 2
    for key, value in one.items():
        torch.testing.assert_close(two["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
