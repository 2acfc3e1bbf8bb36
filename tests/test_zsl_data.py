"""Zero-shot data: xlsa17 on the real att_splits.mat files, CUB's proposed split, semantics, bad input."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import torch

from fewzero.data import semantics as S
from fewzero.data import text_embeddings as T
from fewzero.data.cub import TEST_SEEN, TEST_UNSEEN, TRAINVAL, load_cub, proposed_split
from fewzero.data.xlsa17 import load_xlsa17, read_att_splits, read_res101
from fewzero.zsl.loaders import load_zero_shot
from fewzero.errors import FewzeroError
from fewzero.data.zero_shot import ZeroShotData

DATA = Path(os.environ["FEWZERO_DATA"])
XLSA = DATA / "xlsa17"


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _names(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _fake_labels(name: str) -> np.ndarray:
    """0-based labels of every image of an xlsa17 dataset, consistent with its real splits."""
    splits = read_att_splits(XLSA / name / "att_splits.mat")
    names = splits["names"]
    if name == "CUB":  # real labels: images in class-folder order, labels index allclasses_names
        files = [line.split()[1] for line in (DATA / "cub/CUB_200_2011/images.txt").read_text().splitlines()]
        folders = sorted(f.split("/")[0] for f in files)
        return np.array([names.index(f) for f in folders])
    n = 1 + max(int(splits[k].max()) for k in ("trainval_loc", "test_seen_loc", "test_unseen_loc"))
    seen = [names.index(c) for c in _names(XLSA / name / "trainvalclasses.txt")]
    unseen = [names.index(c) for c in _names(XLSA / name / "testclasses.txt")]
    labels = np.array([seen[i % len(seen)] for i in range(n)])
    labels[splits["test_unseen_loc"]] = [unseen[i % len(unseen)] for i in range(splits["test_unseen_loc"].size)]
    return labels


def _write_res101(folder: Path, labels: np.ndarray, dim: int = 3) -> Path:
    """A res101.mat of the release layout: features (dim, N) whose first row is the image position."""
    features = np.zeros((dim, labels.size))
    features[0] = np.arange(labels.size)
    features[1] = labels
    path = folder / "res101.mat"
    sio.savemat(path, {"features": features, "labels": (labels + 1).reshape(-1, 1).astype(np.int16)})
    return path


@pytest.mark.parametrize("name,n_seen,n_unseen,n_val", [("CUB", 150, 50, 50), ("AWA2", 40, 10, 13),
                                                        ("SUN", 645, 72, 65)])
def test_xlsa17_real_splits_with_written_features(tmp_path, name, n_seen, n_unseen, n_val):
    labels = _fake_labels(name)
    res = _write_res101(tmp_path, labels)
    data = load_xlsa17(name, features_file=res, progress=False)
    splits = read_att_splits(XLSA / name / "att_splits.mat")
    assert (data.seen_classes.numel(), data.unseen_classes.numel()) == (n_seen, n_unseen)
    assert data.semantics.shape == (n_seen + n_unseen, splits["att"].shape[0])
    assert torch.allclose(data.semantics.norm(dim=1), torch.ones(n_seen + n_unseen), atol=1e-5)  # att is L2-normed
    for x, y, key in ((data.train_x, data.train_y, "trainval_loc"), (data.test_seen_x, data.test_seen_y,
                      "test_seen_loc"), (data.test_unseen_x, data.test_unseen_y, "test_unseen_loc")):
        assert x[:, 0].long().tolist() == splits[key].tolist()  # the right images, in the release's order
        assert torch.equal(x[:, 1].long(), y)
    assert not set(data.train_y.tolist()) & set(data.unseen_classes.tolist())
    assert data.val_classes.numel() == n_val and set(data.val_classes.tolist()) <= set(data.seen_classes.tolist())
    original = load_xlsa17(name, "original", features_file=res, progress=False).semantics
    assert torch.allclose(original, torch.from_numpy(splits["original_att"].T).float())


def test_xlsa17_cub_labels_follow_allclasses_names(tmp_path):
    # CUB's allclasses_names is not the folder order: class k of the labels is column k of att.
    labels = _fake_labels("CUB")
    data = load_xlsa17("CUB", "original", features_file=_write_res101(tmp_path, labels), progress=False)
    assert data.class_names[0] == "002.Laysan_Albatross"
    table = np.loadtxt(DATA / "cub/CUB_200_2011/attributes/class_attribute_labels_continuous.txt")
    row = int(data.class_names[int(data.test_unseen_y[0])][:3]) - 1
    assert np.allclose(data.semantics[int(data.test_unseen_y[0])].numpy(), table[row], atol=1e-4)


def test_xlsa17_bad_input(tmp_path):
    splits = sio.loadmat(XLSA / "AWA2" / "att_splits.mat")
    labels = _fake_labels("AWA2")
    folder = tmp_path / "xlsa17" / "AWA2"
    folder.mkdir(parents=True)
    sio.savemat(folder / "att_splits.mat", {k: v for k, v in splits.items()
                                            if not k.startswith("__") and k != "test_unseen_loc"})
    _write_res101(folder, labels)
    with pytest.raises(FewzeroError, match="lacks test_unseen_loc"):
        load_xlsa17("AWA2", data_root=tmp_path, progress=False)
    shutil.copy(XLSA / "AWA2" / "att_splits.mat", folder / "att_splits.mat")
    sio.savemat(folder / "res101.mat", {"features": np.zeros((4, labels.size - 5)), "labels": labels[:, None] + 1})
    with pytest.raises(FewzeroError, match="features have shape .* labels"):
        load_xlsa17("AWA2", data_root=tmp_path, progress=False)
    _write_res101(folder, labels[:-10])  # fewer images than the splits point at
    with pytest.raises(FewzeroError, match="points at image"):
        load_xlsa17("AWA2", data_root=tmp_path, progress=False)
    sio.savemat(folder / "res101.mat", {"features": np.zeros((4, labels.size))})
    with pytest.raises(FewzeroError, match="lacks labels"):
        read_res101(folder / "res101.mat")
    leaked = labels.copy()
    leaked[read_att_splits(folder / "att_splits.mat")["trainval_loc"][0]] = leaked[
        read_att_splits(folder / "att_splits.mat")["test_unseen_loc"][0]]
    _write_res101(folder, leaked)
    with pytest.raises(FewzeroError, match="both seen and unseen|appears in the training data"):
        load_xlsa17("AWA2", data_root=tmp_path, progress=False)
    (folder / "res101.mat").unlink()
    with pytest.raises(FewzeroError, match="res101.mat is missing"):
        load_xlsa17("AWA2", data_root=tmp_path, progress=False)
    with pytest.raises(FewzeroError, match="unknown xlsa17 dataset"):
        load_xlsa17("FLO", data_root=tmp_path)


def _tiny_cub(root: Path) -> list[str]:
    """A 3-class CUB layout whose images.txt is NOT in sorted order; returns the files in images.txt order."""
    from PIL import Image

    base = root / "cub" / "CUB_200_2011"
    files = [f"{c:03d}.Bird_{c}/Bird_{c}_{k}.jpg" for c in (1, 2, 3) for k in (3, 1, 4, 2)]
    for i, f in enumerate(files):
        (base / "images" / f).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 16), (10 * i, 0, 0)).save(base / "images" / f)
    (base / "images.txt").write_text("".join(f"{i + 1} {f}\n" for i, f in enumerate(files)))
    (base / "image_class_labels.txt").write_text("".join(f"{i + 1} {i // 4 + 1}\n" for i in range(12)))
    (base / "bounding_boxes.txt").write_text("".join(f"{i + 1} 2.0 2.0 10.0 8.0\n" for i in range(12)))
    (base / "classes.txt").write_text("".join(f"{c} {c:03d}.Bird_{c}\n" for c in (1, 2, 3)))
    (root / "xlsa17" / "CUB").mkdir(parents=True)
    # sorted order: class 1 -> Bird_1_1..4 at positions 1..4, class 2 at 5..8, class 3 at 9..12 (1-based)
    sio.savemat(root / "xlsa17" / "CUB" / "att_splits.mat", {
        "allclasses_names": np.array([[np.array([f"{c:03d}.Bird_{c}"])] for c in (1, 2, 3)], dtype=object),
        "trainval_loc": np.array([[1], [2], [3], [5], [6], [7]]), "test_seen_loc": np.array([[4], [8]]),
        "test_unseen_loc": np.array([[9], [10], [11], [12]])})
    return files


def test_cub_proposed_split_follows_sorted_file_names(tmp_path):
    files = _tiny_cub(tmp_path)
    role = proposed_split(files, tmp_path / "xlsa17/CUB/att_splits.mat")
    by_file = dict(zip(files, role.tolist()))
    assert by_file["001.Bird_1/Bird_1_4.jpg"] == TEST_SEEN and by_file["001.Bird_1/Bird_1_3.jpg"] == TRAINVAL
    assert by_file["002.Bird_2/Bird_2_4.jpg"] == TEST_SEEN and by_file["002.Bird_2/Bird_2_1.jpg"] == TRAINVAL
    assert {by_file[f] for f in files if f.startswith("003")} == {TEST_UNSEEN}
    cub = load_cub(tmp_path, classes=[1, "003.Bird_3"], image_size=8, progress=False)
    assert cub.images.shape == (8, 3, 8, 8) and cub.class_names == ["001.Bird_1", "003.Bird_3"]
    assert cub.files[:4] == sorted(cub.files[:4])  # feature-file order
    assert cub.split.tolist() == [TRAINVAL] * 3 + [TEST_SEEN] + [TEST_UNSEEN] * 4
    with pytest.raises(FewzeroError, match="unknown CUB class"):
        load_cub(tmp_path, classes=[7], image_size=8, progress=False)
    (tmp_path / "cub/CUB_200_2011/images/001.Bird_1/Bird_1_2.jpg").unlink()
    with pytest.raises(FewzeroError, match="is missing"):
        load_cub(tmp_path, classes=[1], image_size=9, progress=False)


def test_cub50_real_split(data_root):
    cub = load_cub(classes=range(1, 51), image_size=8, bbox_crop=False, progress=False)
    assert cub.images.shape == (2889, 3, 8, 8)
    seen = set(cub.labels[cub.split == TRAINVAL].tolist())
    unseen = set(cub.labels[cub.split == TEST_UNSEEN].tolist())
    assert (len(seen), len(unseen)) == (40, 10) and not seen & unseen
    assert set(cub.labels[cub.split == TEST_SEEN].tolist()) == seen
    assert [(cub.split == r).sum().item() for r in (TRAINVAL, TEST_SEEN, TEST_UNSEEN)] == [1837, 460, 592]
    assert {cub.class_names[c] for c in unseen} == {c for c in _names(XLSA / "CUB/testclasses.txt") if c <= "050"}


def test_text_semantics_with_the_packaged_model(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWZERO_CACHE", str(tmp_path))
    names = ["Black-footed Albatross", "Laysan Albatross", "Northern Cardinal"]
    vectors = T.text_embeddings(names)
    assert vectors.shape == (3, 384) and torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.1  # the model really encodes meaning
    monkeypatch.setattr(T, "load_text_model", lambda *a, **k: pytest.fail("cache not used"))
    assert torch.equal(T.text_embeddings(names), vectors)  # cached on disk by model and texts
    assert len(list((tmp_path / "text_embeddings").glob("*.npz"))) == 1


def test_cub_text_and_attribute_semantics(tmp_path, monkeypatch, data_root):
    folders = S.cub_class_folders()[:4]
    attributes = S.cub_attributes(folders)
    assert attributes.shape == (4, 312) and torch.allclose(attributes.norm(dim=1), torch.ones(4))
    names, descriptions = S.cub_descriptions(folders)
    assert names[0] == "Black-footed Albatross" and "a long, hooked bill" in descriptions[0]
    monkeypatch.setenv("FEWZERO_CACHE", str(tmp_path))
    captured = []

    def fake_embeddings(texts, *args, **kwargs):
        captured.append(list(texts))
        return S.l2_normalize(torch.randn(len(texts), 8))

    monkeypatch.setattr(S, "text_embeddings", fake_embeddings)
    both = S.cub_text(folders, "both")
    assert both.shape == (4, 8) and captured[0][0].startswith("Black-footed Albatross, which has ")
    assert S.cub_text(folders, "names").shape == (4, 8) and captured[-1] == names


def test_semantics_bad_input(tmp_path, monkeypatch, data_root):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FewzeroError, match="cannot load sentence-transformers model 'no-such-org/no-such-model'"):
        T.load_text_model("no-such-org/no-such-model")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(T, "_hub_reachable", lambda *a: False)  # no network: fails at once, no hub retries
    with pytest.raises(FewzeroError, match="no-such-model' .*the hub is offline"):
        T.load_text_model("no-such-org/no-such-model")
    with pytest.raises(FewzeroError, match="has no CUB attributes"):
        S.cub_attributes(["999.Dodo"])
    (tmp_path / "cub").mkdir()
    table = json.loads((DATA / "cub/descriptors_cub.json").read_text())
    del table["Laysan Albatross"]
    (tmp_path / "cub/descriptors_cub.json").write_text(json.dumps(table))
    with pytest.raises(FewzeroError, match="'002.Laysan_Albatross' has no entry"):
        S.cub_descriptions(["001.Black_footed_Albatross", "002.Laysan_Albatross"], tmp_path)
    with pytest.raises(FewzeroError, match="3 classes"):
        S.check_semantics(torch.zeros(2, 4), ["a", "b", "c"])
    nan = torch.zeros(3, 4)
    nan[1, 2] = float("nan")
    with pytest.raises(FewzeroError, match="'b' has NaN"):
        S.check_semantics(nan, ["a", "b", "c"])
    with pytest.raises(FewzeroError, match="unknown text source"):
        S.class_text_semantics(["a"], source="wiki")


def _tiny_data(**change) -> dict:
    x = torch.randn(6, 3)
    fields = dict(semantics=torch.randn(3, 2), class_names=["a", "b", "c"], seen_classes=torch.tensor([0, 1]),
                  unseen_classes=torch.tensor([2]), train_x=x[:4], train_y=torch.tensor([0, 1, 0, 1]),
                  test_seen_x=x[4:5], test_seen_y=torch.tensor([0]), test_unseen_x=x[5:], test_unseen_y=torch.tensor([2]))
    return {**fields, **change}


def test_zero_shot_data_refuses_bad_splits():
    ZeroShotData(**_tiny_data())
    with pytest.raises(FewzeroError, match="unseen class 'c' appears in the training data"):
        ZeroShotData(**_tiny_data(train_y=torch.tensor([0, 1, 2, 1])))
    with pytest.raises(FewzeroError, match="semantics has 2 rows"):
        ZeroShotData(**_tiny_data(semantics=torch.randn(2, 2)))


def test_load_zero_shot_bad_names():
    with pytest.raises(FewzeroError, match="unknown zero-shot dataset 'cub200'"):
        load_zero_shot("cub200")
    with pytest.raises(FewzeroError, match="unknown semantics 'glove'"):
        load_zero_shot("cub50", "glove")
    with pytest.raises(FewzeroError, match="cub50 has no option 'epoch'"):
        load_zero_shot("cub50", epoch=3)
