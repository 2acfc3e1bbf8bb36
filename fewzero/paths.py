"""Where data and caches live: one place resolves it for the whole package."""
from __future__ import annotations

import os
from pathlib import Path

ENV_DATA = "FEWZERO_DATA"
ENV_CACHE = "FEWZERO_CACHE"


def user_cache_dir() -> Path:
    """The per-user cache folder: ``$FEWZERO_CACHE``, else ``$XDG_CACHE_HOME/fewzero``, else ``~/.cache/fewzero``."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "fewzero"


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """Return the data root: the argument (``--data-root``), else ``$FEWZERO_DATA``, else ``<user cache>/data``."""
    if data_root is not None:
        return Path(data_root).expanduser()
    if os.environ.get(ENV_DATA):
        return Path(os.environ[ENV_DATA]).expanduser()
    return user_cache_dir() / "data"


def config_dir() -> Path:
    """The shipped configs: ``fewzero/configs`` inside an installed wheel, else ``configs/`` at the checkout's top."""
    packaged = Path(__file__).parent / "configs"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "configs"
