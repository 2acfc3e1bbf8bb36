"""Multi-task feature backbones for zero-shot learning, and the seeded random class splits of CUB-50."""
from __future__ import annotations

import pytest
import torch

from fewzero.data.cub import TEST_SEEN, TEST_UNSEEN, TRAINVAL
from fewzero.errors import FewzeroError
from fewzero.zsl import features as F
from fewzero.zsl.loaders import random_class_split

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_images(n: int = 48, classes: int = 4):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 12, 12), dtype=torch.uint8, generator=g), torch.arange(n) % classes


def test_heads_are_parsed_in_canonical_order_and_bad_names_are_one_line_errors():
    assert F.parse_heads("rotation+classes") == ("classes", "rotation")
    assert F.parse_heads(["attributes"]) == ("attributes",)
    for bad, message in (("classes+colour", "unknown feature head 'colour'"), ("", "unknown feature head"),
                         ("rotation", "needs a class-level task")):
        with pytest.raises(FewzeroError, match=message) as info:
            F.parse_heads(bad)
        assert "\n" not in str(info.value)


def test_every_head_trains_and_logs_its_metrics_each_epoch(monkeypatch):
    monkeypatch.setattr(F, "_build", lambda name: torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten()))
    images, labels = _tiny_images()
    attributes = torch.rand(4, 5)
    _, _, _, facts = F.train_backbone(images, labels, torch.arange(40), epochs=2, batch_size=8, progress=False,
                                      heads="classes+attributes+rotation", weighting="uncertainty",
                                      class_attributes=attributes)
    assert [row["epoch"] for row in facts["history"]] == [1, 2]
    last = facts["history"][-1]
    for key in ("classes/loss", "classes/metric", "attributes/loss", "rotation/loss", "rotation/metric",
                "classes/weight", "attributes/weight", "rotation/weight"):
        assert key in last
    assert last["attributes/weight"] != 1.0  # uncertainty weights were learned
    with pytest.raises(FewzeroError, match="needs class_attributes"):
        F.train_backbone(images, labels, torch.arange(40), epochs=1, batch_size=8, progress=False,
                         heads="attributes")


def test_rotation_targets_are_the_turns_applied():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float).reshape(2, 3, 4, 4)
    turned, turns = F._rotated(x, torch.Generator().manual_seed(1))
    for image, out, k in zip(x, turned, turns.tolist()):
        torch.testing.assert_close(out, torch.rot90(image, k, (1, 2)))


def test_plain_cross_entropy_keeps_its_cache_key_and_multi_task_settings_get_their_own(tmp_path, monkeypatch):
    monkeypatch.setattr(F, "user_cache_dir", lambda: tmp_path)
    made = []
    monkeypatch.setattr(F, "train_backbone", lambda *a, **k: made.append(k) or (
        torch.nn.Flatten(), torch.zeros(3), torch.ones(3), {"train_seconds": 0}))
    images, labels = _tiny_images()
    F.image_features(images, labels, torch.arange(40), progress=False)
    F.image_features(images, labels, torch.arange(40), progress=False, heads="classes+rotation")
    F.image_features(images, labels, torch.arange(40), progress=False, heads="classes+rotation")
    names = sorted(p.name for p in (tmp_path / "zsl_features").iterdir())
    assert len(names) == 2 and len(made) == 2  # the third call was served from the cache
    facts = F.image_features(images, labels, torch.arange(40), progress=False)[1]
    assert "heads" not in facts and facts["loss"] == "cross-entropy"


def test_random_class_splits_are_seeded_disjoint_and_keep_unseen_images_out_of_training():
    labels = torch.arange(600) % 50
    role, val = random_class_split(labels, seed=3)
    again, val_again = random_class_split(labels, seed=3)
    other, _ = random_class_split(labels, seed=4)
    assert torch.equal(role, again) and torch.equal(val, val_again) and not torch.equal(role, other)
    unseen = labels[role == TEST_UNSEEN].unique()
    seen = labels[role == TRAINVAL].unique()
    assert unseen.numel() == 10 and seen.numel() == 40 and not set(unseen.tolist()) & set(seen.tolist())
    assert set(val.tolist()) <= set(seen.tolist()) and val.numel() == 8
    assert set(labels[role == TEST_SEEN].unique().tolist()) == set(seen.tolist())
    for cls in seen.tolist():  # a fifth of each seen class is its test images
        assert int(((labels == cls) & (role == TEST_SEEN)).sum()) == 2
    with pytest.raises(FewzeroError, match="cannot make"):
        random_class_split(torch.arange(30) % 15, seed=1)


def test_a_random_split_trains_multi_task_features_on_its_seen_training_images_only(data_root):
    from test_zsl_features import load_recording_training_images

    data, fetched = load_recording_training_images(class_split_seed=2, heads="classes+attributes+rotation")
    from fewzero.data.cub import load_cub

    cub = load_cub(classes=range(1, 51), image_size=16, bbox_crop=False, progress=False)
    role, val = random_class_split(cub.labels, 2)
    assert set(role[fetched].tolist()) == {TRAINVAL}
    assert torch.equal(data.unseen_classes, cub.labels[role == TEST_UNSEEN].unique())
    assert torch.equal(data.val_classes, val)
    assert data.info["features"]["heads"] == "classes+attributes+rotation"
