"""Output paths are checked before any work, so a bad ``--records`` or ``--out`` never costs a run."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fewzero.errors import FewzeroError


def _first_existing_parent(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path(".")


def check_writable_file(path: str | os.PathLike, flag: str) -> Path:
    """Refuse a path that is a folder or whose folder cannot take a new file (tried with a temporary file)."""
    path = Path(path)
    if path.is_dir():
        raise FewzeroError(f"{flag} {path} is a folder: give a file name, e.g. {path / 'report.json'}")
    parent = path.parent if path.parent.exists() else _first_existing_parent(path)
    if not parent.is_dir():
        raise FewzeroError(f"{flag} {path}: {parent} is not a folder: choose another path")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".fewzero-write-check-"):
            pass
    except OSError as exc:
        raise FewzeroError(f"{flag} {path} cannot be written ({exc.strerror or exc}): choose another path") from None
    return path
