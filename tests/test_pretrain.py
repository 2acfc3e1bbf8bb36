"""fewzero pretrain: supervised pretraining on the base classes, its checkpoints, resume after SIGKILL, the CLI."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from fewzero.checkpoint import PRETRAINED_KIND, learner_from_checkpoint, load_checkpoint
from fewzero.cli import main
from fewzero.errors import FewzeroError
from fewzero.pretrain import pretrain, pretrain_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"epochs": 4, "batch_size": 32, "val_episodes": 4, "backbone_args.hidden": 8, "precision": "fp32",
        "augment_shift": 2, "max_minutes": None, "lr": 0.01}


def tiny_config(**changes):
    return pretrain_config("omniglot", overrides={**TINY, **changes})


def test_pretraining_writes_a_backbone_every_transfer_learner_loads(tiny_omniglot, tmp_path):
    metrics = pretrain(tiny_config(), tmp_path / "run", data_root=tiny_omniglot, progress=False)
    assert metrics["epochs_done"] == 4 and len(metrics["history"]) == 4
    assert [record["epoch"] for record in metrics["history"]] == [1, 2, 3, 4]
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["kind"] == PRETRAINED_KIND and best["statistics"]["base_mean"].shape == (8,)
    learner, config, saved = learner_from_checkpoint(tmp_path / "run" / "best.pt", method="simpleshot")
    assert torch.equal(learner.base_mean, best["statistics"]["base_mean"])
    assert saved["val_accuracy"] == metrics["best_val_accuracy"]



def test_shifted_images_reach_the_network(tiny_omniglot, tmp_path):
    weights = {}
    for shift in (0, 2):
        pretrain(tiny_config(epochs=1, augment_shift=shift), tmp_path / str(shift), data_root=tiny_omniglot,
                 progress=False)
        weights[shift] = load_checkpoint(tmp_path / str(shift) / "last.pt")["model"]
    assert any(not torch.equal(weights[0][k], weights[2][k]) for k in weights[0])

KILL_AFTER_SECOND_EPOCH = textwrap.dedent("""
    import os, signal, sys
    import fewzero.pretrain as module
    real_save = module.save_checkpoint
    saves = []
    def save_then_die(path, payload):
        real_save(path, payload)
        if path.name == "last.pt":
            saves.append(payload["epoch"])
            if len(saves) == 2:
                os.kill(os.getpid(), signal.SIGKILL)  # killed for real, right after epoch 2's checkpoint
    module.save_checkpoint = save_then_die
    from fewzero.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_sigkill_then_resume_ends_with_the_weights_of_an_uninterrupted_run(tiny_omniglot, tmp_path):
    flags = ["--data-root", str(tiny_omniglot), "--quiet", *(f"--set={k}={'null' if v is None else v}" for k, v in TINY.items())]
    assert main(["pretrain", "--out", str(tmp_path / "straight"), *flags]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_SECOND_EPOCH, "pretrain", "--out",
                             str(tmp_path / "killed"), *flags], env=env, capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["epoch"] == 2
    assert main(["pretrain", "--resume", "--out", str(tmp_path / "killed"), "--data-root", str(tiny_omniglot),
                 "--quiet"]) == 0
    a, b = (load_checkpoint(tmp_path / run / "last.pt") for run in ("straight", "killed"))
    assert a["epoch"] == b["epoch"] == 4
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [h["val_accuracy"] for h in a["history"]] == [h["val_accuracy"] for h in b["history"]]
    assert [r["epoch"] for r in b["resumes"]] == [2]


def test_resume_may_change_only_the_epochs_and_the_time_limit(tiny_omniglot, tmp_path, capsys):
    pretrain(tiny_config(epochs=1), tmp_path / "run", data_root=tiny_omniglot, progress=False)
    assert main(["pretrain", "--resume", "--out", str(tmp_path / "run"), "--lr", "0.1", "--quiet"]) == 2
    assert "drop --lr" in capsys.readouterr().err
    metrics = pretrain(None, tmp_path / "run", resume=True, changes={"epochs": 2}, data_root=tiny_omniglot,
                       progress=False)
    assert metrics["epochs_done"] == 2


def test_train_and_pretrain_refuse_to_resume_each_others_runs(tiny_omniglot, tmp_path):
    from fewzero.train import train

    pretrain(tiny_config(epochs=1), tmp_path / "run", data_root=tiny_omniglot, progress=False)
    with pytest.raises(FewzeroError, match="holds a pretraining: continue it with fewzero pretrain --resume"):
        train(None, tmp_path / "run", resume=True, data_root=tiny_omniglot, progress=False)


def test_the_meta_training_command_refuses_a_learner_that_is_not_meta_trained(tmp_path, capsys):
    assert main(["train", "--method", "finetune", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "fewzero pretrain" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
