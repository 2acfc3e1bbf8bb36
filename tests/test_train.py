import json

import pytest
import torch

import fewzero.train as train_module
from fewzero.checkpoint import learner_from_checkpoint, load_checkpoint
from fewzero.config import load_config
from fewzero.errors import FewzeroError
from fewzero.train import train

SHORT = {"train_way": 20, "train_shot": 1, "train_query": 5, "val_episodes": 50, "max_minutes": None,
         "precision": "fp32"}


def test_short_real_training_beats_chance_by_far(data_root, tmp_path):
    config = load_config("protonet", "omniglot", overrides={**SHORT, "episodes": 40, "val_every": 20, "val_episodes": 25})
    metrics = train(config, tmp_path, progress=False)
    # 5-way 1-shot validation: chance is 20 %
    assert metrics["best_val_accuracy"] > 60.0, metrics["history"]
    assert [h["episode"] for h in metrics["history"]] == [20, 40]
    assert json.loads((tmp_path / "metrics.json").read_text())["episodes_done"] == 40
    learner, saved_config, saved_metrics = learner_from_checkpoint(tmp_path / "best.pt")
    assert saved_config == config and saved_metrics["val_accuracy"] == metrics["best_val_accuracy"]
    with pytest.raises(FewzeroError, match="already holds a run"):
        train(config, tmp_path, progress=False)


def test_resume_after_a_kill_gives_the_same_model(data_root, tmp_path, monkeypatch):
    config = load_config("protonet", "omniglot", overrides={**SHORT, "episodes": 12, "val_every": 4,
                                                               "val_episodes": 5, "lr_step": 5})
    train(config, tmp_path / "straight", progress=False)

    real_save = train_module.save_checkpoint
    saves = []

    def save_then_die(path, payload):
        real_save(path, payload)
        if path.name == "last.pt":
            saves.append(payload["episode"])
            if len(saves) == 2:
                raise KeyboardInterrupt  # killed right after the checkpoint of episode 8

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "killed", progress=False)
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["episode"] == 8
    metrics = train(config, tmp_path / "killed", resume=True, progress=False)
    assert metrics["episodes_done"] == 12
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "killed" / "last.pt")
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-6, msg=key)
    assert [(h["episode"], h["val_accuracy"]) for h in a["history"]] == \
        [(h["episode"], pytest.approx(h["val_accuracy"])) for h in b["history"]]


def test_resume_without_a_run(tmp_path):
    with pytest.raises(FewzeroError, match="nothing to resume"):
        train(load_config("protonet"), tmp_path, resume=True, progress=False)
