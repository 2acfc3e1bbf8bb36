"""Shared fixtures. Tests read the real data in ../shared/data (or $FEWZERO_DATA) and cache in a temp folder."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEWZERO_DATA") or REPO.parent / "shared" / "data").resolve()
os.environ["FEWZERO_DATA"] = str(DATA)
# One cache folder per test session: the first Omniglot load decodes the zips, later ones reuse the array.
os.environ.setdefault("FEWZERO_CACHE", tempfile.mkdtemp(prefix="fewzero-test-cache-"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA / "omniglot" / "images_background.zip").is_file():
        raise RuntimeError(f"real data not found at {DATA}: set FEWZERO_DATA to the shared data folder")
    return DATA


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def omniglot_test(data_root):
    from fewzero.data.omniglot import omniglot

    return omniglot("test", progress=False)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one thread is faster, and avoids thread spin-waiting when other jobs share the cores.

    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_ALPHABETS = {"images_background": ("Alpha", "Beta"), "images_evaluation": ("Gamma",)}
TINY_CHARACTERS = 2  # per alphabet; 20 drawings each, as in Omniglot


@pytest.fixture(scope="session")
def tiny_omniglot_entries() -> dict[str, dict[str, bytes]]:
    """Entries of a tiny Omniglot in the official zip layout: archive -> {``images_background/<Alphabet>/
    characterNN/XXXX_YY.png``: 28x28 PNG bytes}; 3 alphabets of 2 characters of 20 drawings."""
    import io

    import numpy as np
    from PIL import Image

    archives: dict[str, dict[str, bytes]] = {}
    for archive, alphabets in TINY_ALPHABETS.items():
        entries = archives.setdefault(archive, {})
        for a, alphabet in enumerate(alphabets):
            for c in range(TINY_CHARACTERS):
                number = 100 * (len(archives) - 1) + 10 * a + c
                for d in range(20):
                    pixels = np.random.default_rng(number * 20 + d).random((28, 28)) > 0.2
                    png = io.BytesIO()
                    Image.fromarray(pixels).save(png, format="PNG")
                    entries[f"{archive}/{alphabet}/character{c + 1:02d}/{number:04d}_{d + 1:02d}.png"] = png.getvalue()
    return archives


@pytest.fixture(scope="session")
def tiny_omniglot_files(tiny_omniglot_entries) -> dict[str, bytes]:
    """The files of a tiny Omniglot data root: path under the root -> bytes (both zips and the Vinyals split
    files: train = Alpha, val = Beta, test = Gamma, every character in its 4 rotations, so 8 classes each)."""
    import io
    import zipfile

    files = {}
    for archive, entries in tiny_omniglot_entries.items():
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zipped:
            for name, data in entries.items():
                zipped.writestr(name, data)
        files[f"omniglot/{archive}.zip"] = buffer.getvalue()
    subsets = {"train": ("Alpha",), "val": ("Beta",), "test": ("Gamma",), "trainval": ("Alpha", "Beta")}
    for subset, alphabets in subsets.items():
        lines = [f"{alphabet}/character{c + 1:02d}/rot{r:03d}" for alphabet in alphabets
                 for c in range(TINY_CHARACTERS) for r in (0, 90, 180, 270)]
        files[f"omniglot/splits/vinyals/{subset}.txt"] = ("\n".join(lines) + "\n").encode()
    return files


@pytest.fixture
def tiny_omniglot(tmp_path, tiny_omniglot_files) -> Path:
    """A fresh tiny Omniglot data root (``tmp_path / "data"``) that tests may damage."""
    root = tmp_path / "data"
    for relative, data in tiny_omniglot_files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return root
