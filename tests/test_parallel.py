"""Data-parallel meta-training (``workers > 1``): same trajectory as one process, clear errors, clean stops."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fewzero.checkpoint import load_checkpoint
from fewzero.config import load_config
from fewzero.errors import FewzeroError
from fewzero.sampling import EpisodeSampler
from fewzero.train import train

REPO = Path(__file__).resolve().parents[1]
# MLP backbone: every parameter gets a real gradient. (Conv biases in front of batch norm get rounding noise,
# which Adam scales up to full steps, so two runs differing only in float summation order drift apart there.)
TINY_MAML = {"backbone": "mlp", "train_way": 5, "train_shot": 1, "train_query": 5, "episodes": 24, "meta_batch": 8,
             "val_every": 8, "val_episodes": 5, "max_minutes": None, "precision": "fp32"}


def test_two_workers_follow_the_single_process_trajectory(data_root, tmp_path):
    config = load_config("maml", "omniglot", overrides=TINY_MAML)
    one = train(config, tmp_path / "one", progress=False)
    two = train(load_config("maml", "omniglot", overrides={**TINY_MAML, "workers": 2}), tmp_path / "two",
                progress=False)
    assert two["episodes_done"] == one["episodes_done"] == 24
    assert [h["episode"] for h in two["history"]] == [8, 16, 24]
    assert [h["val_accuracy"] for h in two["history"]] == pytest.approx([h["val_accuracy"] for h in one["history"]])
    a, b = load_checkpoint(tmp_path / "one" / "last.pt"), load_checkpoint(tmp_path / "two" / "last.pt")
    assert a["episode"] == b["episode"] == 24
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-4, atol=1e-5, msg=key)


def test_workers_share_the_episodes_without_overlap():
    labels = torch.arange(20).repeat_interleave(4)
    whole = EpisodeSampler(labels, 5, 1, 1, n_episodes=13, seed=3, start=4)
    shards = [list(EpisodeSampler(labels, 5, 1, 1, n_episodes=13, seed=3, start=4, rank=r, world=3))
              for r in range(3)]
    whole = list(whole)  # episodes 4 .. 12
    assert shards == [[whole[i - 4] for i in range(4, 13) if i % 3 == rank] for rank in range(3)]
    with pytest.raises(FewzeroError, match="rank"):
        EpisodeSampler(labels, 5, 1, 1, n_episodes=13, rank=3, world=3)


@pytest.mark.parametrize("overrides, message", [
    ({"workers": 3}, "multiples of workers"),
    ({"workers": 0}, "'workers'.* >= 1"),
    ({"workers": 2, "device": "cuda"}, "set workers to 1"),
])
def test_bad_worker_settings(overrides, message):
    with pytest.raises(FewzeroError, match=message):
        load_config("maml", "omniglot", overrides={**TINY_MAML, **overrides})


def test_an_error_in_a_worker_is_one_line(data_root, tmp_path):
    config = load_config("maml", "omniglot", overrides={**TINY_MAML, "workers": 2,
                                                          "learner": {"n_way": 5, "feature_dim": 64,
                                                                      "inner_lr": 1e30}})
    with pytest.raises(FewzeroError, match="loss became") as caught:
        train(config, tmp_path, progress=False)
    assert "\n" not in str(caught.value)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.is_file() else []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads process children from Linux's /proc")
def test_terminating_training_stops_its_workers(data_root, tmp_path):
    cmd = [sys.executable, "-m", "fewzero", "train", "--method", "maml", "--quiet", "--out", str(tmp_path / "run"),
           "--episodes", "100000", "--set", "workers=2", "--set", "backbone=mlp", "--set", "max_minutes=null"]
    process = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        deadline, workers = time.monotonic() + 120, []
        while time.monotonic() < deadline and process.poll() is None:
            # two training workers (spawn also starts a resource tracker) that have begun training
            workers = [c for c in _children(process.pid) if "multiprocessing.spawn" in
                       Path(f"/proc/{c}/cmdline").read_text(errors="replace")]
            if len(workers) == 2:
                time.sleep(8)  # let them load the data and start training
                break
            time.sleep(0.5)
        assert len(workers) == 2, process.stderr.read() if process.poll() is not None else "no workers started"
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) != 0
        assert "Traceback" not in process.stderr.read()
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers)
    finally:
        if process.poll() is None:
            process.kill()
