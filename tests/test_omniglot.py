import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

from fewzero.data.omniglot import omniglot
from fewzero.errors import DataNotFoundError, FewzeroError


@pytest.mark.parametrize("subset,n_classes", [("train", 4112), ("val", 688), ("test", 1692), ("trainval", 4800)])
def test_vinyals_subsets(data_root, subset, n_classes):
    dataset = omniglot(subset, progress=False)
    assert dataset.num_classes == n_classes and len(dataset) == 20 * n_classes
    x, y = dataset[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1


def test_rotations_are_classes_of_their_own(omniglot_test):
    names = omniglot_test.class_names
    assert names[:4] == [f"Gurmukhi/character42/rot{r}" for r in ("000", "090", "180", "270")]
    upright = omniglot_test.__getitems__(list(range(20))).x
    turned = omniglot_test.__getitems__(list(range(20, 40))).x
    torch.testing.assert_close(turned, torch.rot90(upright, 1, dims=(-2, -1)))
    assert omniglot_test.labels[:40].tolist() == [0] * 20 + [1] * 20


def test_lake_split_uses_alphabets_without_rotations(data_root):
    test = omniglot("test", split="lake", progress=False)
    trainval = omniglot("trainval", split="lake", progress=False)
    assert test.num_classes == 659 and trainval.num_classes == 964
    train, val = omniglot("train", split="lake", progress=False), omniglot("val", split="lake", progress=False)
    alphabets = lambda d: {n.split("/")[0] for n in d.class_names}  # noqa: E731
    assert len(alphabets(val)) == 5 and not alphabets(train) & alphabets(val) and len(alphabets(test)) == 20
    assert train.num_classes + val.num_classes == 964
    assert test.item_rotation is None


def test_image_size_is_a_parameter(tiny_omniglot):
    # the tiny Omniglot (28x28 drawings): the real one decodes all 32,460 drawings at the new size, ~8 s
    small, full = (omniglot("val", data_root=tiny_omniglot, image_size=size, progress=False) for size in (20, 28))
    assert small[0][0].shape == (1, 20, 20) and full[0][0].shape == (1, 28, 28)
    assert len(small) == len(full) and small[0][0].sum() > 0


def test_second_load_is_fast(data_root):
    omniglot("test", progress=False)  # make sure the cache exists
    code = ("import time; from fewzero.data.omniglot import load_drawings; t = time.perf_counter(); "
            "load_drawings(progress=False); print(time.perf_counter() - t)")
    seconds = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert seconds < 1.0


def test_unknown_split_and_subset(data_root):
    with pytest.raises(FewzeroError, match="unknown Omniglot split 'ravi'"):
        omniglot("test", split="ravi")
    with pytest.raises(FewzeroError, match="unknown Omniglot subset"):
        omniglot("testing")


def _copy_omniglot(data_root, tmp_path):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    shutil.copytree(data_root / "omniglot" / "splits", folder / "splits")
    for name in ("images_background.zip", "images_evaluation.zip"):
        shutil.copy(data_root / "omniglot" / name, folder / name)
    return folder


def test_truncated_zip_is_a_clear_error(data_root, tmp_path):
    folder = _copy_omniglot(data_root, tmp_path)
    zip_path = folder / "images_evaluation.zip"
    zip_path.write_bytes(zip_path.read_bytes()[: 1_000_000])
    with pytest.raises(FewzeroError, match="corrupt or truncated.*delete it"):
        omniglot("test", data_root=tmp_path, progress=False)


def test_corrupt_member_is_a_clear_error(data_root, tmp_path):
    folder = _copy_omniglot(data_root, tmp_path)
    zip_path = folder / "images_background.zip"
    raw = bytearray(zip_path.read_bytes())
    with zipfile.ZipFile(zip_path) as z:
        info = z.infolist()[50]
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 5
    raw[start:start + 20] = bytes(20)  # damage compressed data: a CRC or decompression error
    zip_path.write_bytes(bytes(raw))
    with pytest.raises(FewzeroError, match="corrupt or truncated"):
        omniglot("train", data_root=tmp_path, progress=False)


def test_extracted_folders_work_like_zips(tiny_omniglot, tmp_path):
    """The same tiny Omniglot as zips and as extracted folders (the code paths, not the 32k images, are under
    test: the real data ran this in 14-16 s)."""
    folders = tmp_path / "folders"
    shutil.copytree(tiny_omniglot, folders)
    for name in ("images_background", "images_evaluation"):
        with zipfile.ZipFile(folders / "omniglot" / f"{name}.zip") as z:
            z.extractall(folders / "omniglot")
        (folders / "omniglot" / f"{name}.zip").unlink()
    from_folders = omniglot("val", data_root=folders, progress=False)
    from_zips = omniglot("val", data_root=tiny_omniglot, progress=False)
    assert len(from_zips) == 8 * 20 and from_zips.images.float().std() > 0
    assert torch.equal(from_folders.images, from_zips.images)
    assert from_folders.class_names == from_zips.class_names


def test_missing_data_root_without_network(tmp_path, monkeypatch):
    monkeypatch.setattr("fewzero.data.omniglot.OMNIGLOT_URL", "http://127.0.0.1:9/")  # nothing listens on port 9
    with pytest.raises(DataNotFoundError, match="--data-root / FEWZERO_DATA"):
        omniglot("test", data_root=tmp_path / "nowhere", progress=False)
    assert not list((tmp_path / "nowhere").rglob("*.part"))
