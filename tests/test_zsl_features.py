"""The CUB-50 pipeline: no unseen-class image (and no seen-class test image) reaches backbone or learner training."""
from __future__ import annotations

import pytest
import torch

from fewzero.data.cub import TRAINVAL, load_cub
from fewzero.zsl.loaders import load_zero_shot
from fewzero.errors import FewzeroError
from fewzero.evaluate_zsl import evaluate_zero_shot
from fewzero.zsl import features as F

TINY = dict(image_size=16, epochs=1, bbox_crop=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def load_recording_training_images(**options):
    """(tiny CUB-50 features loaded with ``options``, every image index the feature trainer fetched meanwhile)."""
    fetched = []
    original = F._training_batch

    def recording(images, index, pad, generator):
        fetched.append(index.clone())
        return original(images, index, pad, generator)

    F._training_batch = recording
    try:
        data = load_zero_shot("cub50", "attributes", progress=False, cache=False, **TINY, **options)
    finally:
        F._training_batch = original
    return data, torch.cat(fetched)


@pytest.fixture(scope="module")
def trained_on(data_root):
    """Every image index the feature trainer fetched while building tiny CUB-50 features."""
    return load_recording_training_images()


def test_feature_backbone_sees_only_seen_class_training_images(trained_on):
    data, fetched = trained_on
    cub = load_cub(classes=range(1, 51), image_size=16, bbox_crop=False, progress=False)
    assert fetched.numel() > 0
    assert set(cub.split[fetched].tolist()) == {TRAINVAL}  # never a test image, seen or unseen
    assert not set(cub.labels[fetched].tolist()) & set(data.unseen_classes.tolist())
    # with batch 64 only the last incomplete batch of the epoch is left out
    assert fetched.unique().numel() > (cub.split == TRAINVAL).sum() - 64


def test_learner_training_sees_only_seen_classes(trained_on):
    data, _ = trained_on
    assert (data.seen_classes.numel(), data.unseen_classes.numel()) == (40, 10)
    assert data.train_x.shape == (1837, 256) and data.test_unseen_x.shape[0] == 592
    assert not set(data.train_y.tolist()) & set(data.unseen_classes.tolist())
    assert data.val_classes.numel() == 8 and set(data.val_classes.tolist()) <= set(data.seen_classes.tolist())
    assert data.info["features"]["backbone"] == "resnet_small" and data.info["features"]["epochs"] == 1
    from fewzero.registry import ZERO_SHOT

    learner = ZERO_SHOT.create("eszsl")
    fitted = []
    original_fit = learner.fit

    def recording_fit(x, y, semantics):
        fitted.append((x, semantics))
        return original_fit(x, y, semantics)

    learner.fit = recording_fit
    evaluate_zero_shot(learner, data)
    unseen_rows = data.semantics[data.unseen_classes]
    for x, semantics in fitted:  # no unseen class's semantics, no test features
        assert not any(torch.equal(row, s) for row in unseen_rows for s in semantics)
        train_rows = {tuple(r) for r in data.train_x.tolist()}
        assert all(tuple(r) in train_rows for r in x.tolist())


def test_val_blind_features_never_train_on_the_validation_classes(trained_on):
    """val_blind: the backbone learns from the seen training images of the non-validation classes only; the data
    (splits, validation classes, items) is otherwise the same."""
    data, fetched = trained_on
    blind, blind_fetched = load_recording_training_images(val_blind=True)
    cub = load_cub(classes=range(1, 51), image_size=16, bbox_crop=False, progress=False)
    assert torch.equal(blind.val_classes, data.val_classes) and torch.equal(blind.train_y, data.train_y)
    assert blind.info["val_blind"] and not data.info["val_blind"]
    trained_classes = set(cub.labels[blind_fetched].tolist())
    assert trained_classes == set(data.seen_classes.tolist()) - set(data.val_classes.tolist())
    assert set(cub.labels[fetched].tolist()) == set(data.seen_classes.tolist())
    with pytest.raises(FewzeroError, match="val_blind needs validation classes"):
        load_zero_shot("cub50", "attributes", progress=False, cache=False, val_split=0, val_blind=True, **TINY)


def test_unseen_images_in_backbone_training_are_refused():
    images = torch.zeros(6, 3, 16, 16, dtype=torch.uint8)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    with pytest.raises(FewzeroError, match="class 2 is unseen"):
        F.image_features(images, labels, torch.tensor([0, 2, 4]), forbidden_classes=torch.tensor([2]), cache=False)


def test_features_are_cached_by_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWZERO_CACHE", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.arange(12) % 3
    first, info = F.image_features(images, labels, torch.arange(12), epochs=1, batch_size=4, progress=False)
    assert first.shape == (12, 256) and not info["cached"] and info["input_size"] == [3, 16, 16]
    again, info = F.image_features(images, labels, torch.arange(12), epochs=1, batch_size=4, progress=False)
    assert info["cached"] and torch.equal(first, again)
    _, info = F.image_features(images, labels, torch.arange(12), epochs=2, batch_size=4, progress=False)
    assert not info["cached"]
    with pytest.raises(FewzeroError, match="unknown feature backbone"):
        F.image_features(images, labels, torch.arange(12), backbone="vit", cache=False)
