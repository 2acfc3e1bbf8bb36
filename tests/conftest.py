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
