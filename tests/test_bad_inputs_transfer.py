"""Bad input to the transfer commands (fewzero pretrain, eval of the transfer learners): one line, exit 2, no file.

The shared rules and helpers are those of tests/test_bad_inputs.py (tests/bad_input_helpers.py).
"""
from __future__ import annotations

import pytest

import bad_input_helpers
from bad_input_helpers import fails
from fewzero.pretrained import PACKAGED

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_isolated = bad_input_helpers.isolated  # autouse: each case gets its own empty cache, no data, no network
PRETRAINED = PACKAGED / "pretrain_conv4_omniglot.pt"


def eval_finetune(tmp_path, *extra):
    return ["eval", "--method", "finetune", "--checkpoint", PRETRAINED, "--data-root", tmp_path / "data", "--quiet",
            *extra]


@pytest.mark.parametrize("setting, fragments", [
    ("learner.freeze=9", ("freeze=9 but the backbone has 4 blocks", "block1, block2, block3, block4", "0..4")),
    ("learner.lrs={block9: 0.1}", ("unknown block 'block9'", "block1, block2, block3, block4, head")),
    ("learner.lrs={head: -0.01}", ("learning rate head must be a number >= 0",)),
    ("learner.lr=-0.1", ("lr must be a finite number >= 0",)),
    ("learner.lr_decay=0", ("lr decay must be a number > 0",)),
])
def test_fine_tuning_settings_that_cannot_work(capfd, tmp_path, setting, fragments):
    fails(capfd, tmp_path, eval_finetune(tmp_path, "--set", setting), *fragments)


def test_a_pretrained_checkpoint_of_another_backbone(capfd, tmp_path):
    fails(capfd, tmp_path, ["eval", "--method", "simpleshot", "--checkpoint", PRETRAINED, "--set",
                            "backbone=resnet_small", "--quiet"],
          "holds a pretrained conv4 backbone, not resnet_small", "fewzero pretrain --backbone resnet_small")


def test_a_pretrained_backbone_is_not_a_meta_learner(capfd, tmp_path):
    fails(capfd, tmp_path, ["eval", "--method", "protonet", "--checkpoint", PRETRAINED, "--quiet"],
          "which protonet does not start from", "baseline, baselinepp")


@pytest.mark.parametrize("flags, fragments", [
    (["--set", "epochs=0"], ("'epochs'", "must be >= 1")),
    (["--batch-size", "-4"], ("'batch_size'", "(from --batch-size)", "must be >= 1")),
    (["--set", "objective=triplet"], ("'objective'", "linear, cosine")),
    (["--backbone", "vgg"], ("unknown backbone 'vgg'", "conv4")),
    (["--set", "workers=2"], ("'workers'", "is gone", "--nproc N")),
    (["--batch-size", "5", "--nproc", "2"], ("batch_size (5)", "multiple of the number of processes (2)")),
    (["--lr", "-1"], ("'lr'", "(from --lr)")),
])
def test_pretraining_settings_that_cannot_work(capfd, tmp_path, flags, fragments):
    fails(capfd, tmp_path, ["pretrain", "--out", tmp_path / "run", "--quiet", *flags], *fragments)


def test_resuming_a_pretraining_that_is_not_there(capfd, tmp_path):
    fails(capfd, tmp_path, ["pretrain", "--resume", "--out", tmp_path / "nothing", "--quiet"], "nothing to resume")


def test_resuming_needs_the_run_folder(capfd, tmp_path):
    fails(capfd, tmp_path, ["pretrain", "--resume", "--quiet"], "--resume needs --out")
