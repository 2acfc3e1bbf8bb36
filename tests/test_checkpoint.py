import os
import pickle

import pytest
import torch

from fewzero.checkpoint import build_learner, learner_from_checkpoint, load_checkpoint, save_checkpoint
from fewzero.config import load_config
from fewzero.errors import FewzeroError


@pytest.fixture
def saved(tmp_path):
    config = load_config("protonet", "omniglot")
    learner = build_learner(config)
    path = save_checkpoint(tmp_path / "best.pt", {"config": config.to_dict(), "model": learner.state_dict(),
                                                   "metrics": {"val_accuracy": 50.0}})
    return path, learner


def test_round_trip(saved):
    path, learner = saved
    loaded, config, metrics = learner_from_checkpoint(path)
    assert metrics == {"val_accuracy": 50.0} and config.method == "protonet"
    for (k, a), (_, b) in zip(learner.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"], "no temporary file left behind"


def test_truncated_checkpoint(saved):
    path, _ = saved
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(FewzeroError, match="unreadable or truncated"):
        load_checkpoint(path)


def test_garbage_and_missing(tmp_path):
    (tmp_path / "x.pt").write_bytes(os.urandom(300))
    with pytest.raises(FewzeroError, match="unreadable or truncated"):
        load_checkpoint(tmp_path / "x.pt")
    with pytest.raises(FewzeroError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(FewzeroError, match="not a fewzero checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


class Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_loading_never_runs_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open("evil.pt", "wb") as f:
        pickle.dump({"format": "fewzero-checkpoint-v1", "model": Payload()}, f)
    with pytest.raises(FewzeroError, match="unreadable"):
        load_checkpoint("evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_weights_that_do_not_match_the_config(saved):
    path, _ = saved
    payload = load_checkpoint(path)
    payload["config"]["backbone_args"] = {"hidden": 32}
    save_checkpoint(path, {k: v for k, v in payload.items() if k != "format"})
    with pytest.raises(FewzeroError, match="does not match its config"):
        learner_from_checkpoint(path)


def test_overriding_a_setting_drops_its_saved_per_shot_values(tmp_path):
    config = load_config("anil", "omniglot", overrides={"learner.test_inner_lr_by_shot": {1: 0.2, 5: 0.05}})
    path = save_checkpoint(tmp_path / "anil.pt", {"config": config.to_dict(), "model": build_learner(config).state_dict()})
    saved = learner_from_checkpoint(path)[0]
    assert (saved.eval_inner_lr(1), saved.eval_inner_lr(5), saved.eval_inner_lr(10)) == (0.2, 0.05, 0.4)
    overridden, config, _ = learner_from_checkpoint(path, {"test_inner_lr": 0.1})
    assert (overridden.eval_inner_lr(1), overridden.eval_inner_lr(5)) == (0.1, 0.1)
    assert "test_inner_lr_by_shot" not in config.learner
    both = learner_from_checkpoint(path, {"test_inner_lr": 0.1, "test_inner_lr_by_shot": {5: 0.025}})[0]
    assert (both.eval_inner_lr(1), both.eval_inner_lr(5)) == (0.1, 0.025)
    steps = learner_from_checkpoint(path, {"test_inner_steps": 1})[0]  # another setting keeps the saved values
    assert (steps.eval_inner_lr(1), steps.eval_inner_lr(5), steps.test_inner_steps) == (0.2, 0.05, 1)
