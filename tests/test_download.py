"""Downloads against a local HTTP server on 127.0.0.1."""
import hashlib
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from fewzero.data.download import download
from fewzero.data.omniglot import fetch_archives, load_drawings
from fewzero.errors import DataNotFoundError, FewzeroError
from local_http import serve


def tiny_omniglot_zip(name: str, n_chars: int = 3) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for c in range(n_chars):
            for d in range(20):
                image = Image.fromarray((np.random.default_rng(c * 20 + d).random((105, 105)) > 0.1))
                png = io.BytesIO()
                image.save(png, format="PNG")
                archive.writestr(f"{name}/Alpha{name[-4:]}/character{c + 1:02d}/{c:04d}_{d:02d}.png", png.getvalue())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server():
    files = {f"/good/{n}.zip": tiny_omniglot_zip(n) for n in ("images_background", "images_evaluation")}
    files["/bad/images_background.zip"] = files["/good/images_background.zip"][:-100] + bytes(100)
    files["/bad/images_evaluation.zip"] = files["/good/images_evaluation.zip"]
    md5 = {n: hashlib.md5(files[f"/good/{n}.zip"]).hexdigest() for n in ("images_background", "images_evaluation")}
    with serve(files) as url:
        yield url, md5


def test_good_download_is_verified_and_usable(server, tmp_path, monkeypatch):
    url, md5 = server
    sources = fetch_archives(tmp_path / "omniglot", base_url=f"{url}/good/", md5=md5)
    assert all(p.is_file() for p in sources.values())
    assert not list(tmp_path.rglob("*.part"))
    monkeypatch.setattr("fewzero.data.omniglot.fetch_archives", lambda folder, **kw: sources)
    images, character, names, background = load_drawings(tmp_path, image_size=28, progress=False)
    assert images.shape == (120, 28, 28) and len(names) == 6 and background.sum() == 3


def test_wrong_md5_leaves_no_file(server, tmp_path):
    url, md5 = server
    with pytest.raises(FewzeroError, match="MD5 of .* is [0-9a-f]{32}, expected"):
        fetch_archives(tmp_path / "omniglot", base_url=f"{url}/bad/", md5=md5)
    assert not list((tmp_path / "omniglot").iterdir())


def test_http_error_and_offline(server, tmp_path):
    url, _ = server
    with pytest.raises(DataNotFoundError, match="could not download .*FEWZERO_DATA"):
        download(f"{url}/missing.zip", tmp_path / "x.zip")
    with pytest.raises(DataNotFoundError, match="--data-root"):
        download("http://127.0.0.1:9/x.zip", tmp_path / "y.zip")
    assert not list(tmp_path.iterdir())
