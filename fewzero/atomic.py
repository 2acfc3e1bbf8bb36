"""Write files so that a reader (or a killed run) never sees half of one.

Every file fewzero writes goes through ``atomic_path``: the writer fills a temporary file beside the target, and
only a finished file is renamed into place (``os.replace`` is atomic on one file system).

    with atomic_path("model.pt") as tmp:
        torch.save(state, tmp)
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on failure delete it.

    ``suffix`` is appended to the temporary name for writers that insist on an extension (``np.savez`` adds
    ``.npz``, matplotlib picks the format from it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """``write_text`` of ``value`` as indented JSON (objects JSON cannot hold are written as strings)."""
    return write_text(path, json.dumps(value, indent=1, default=str) + "\n")


def append_line(path: str | os.PathLike, line: str) -> Path:
    """Append one line (a JSON record of a live log) and flush it to disk, so a reader sees whole lines only.

    A single ``write`` of a short line in append mode is not split by concurrent readers on POSIX file systems.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line.rstrip("\n") + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path


def make_folders(folder: str | os.PathLike) -> list[Path]:
    """Create ``folder`` and its missing parents; return the folders created, deepest first.

    On failure the folders created so far are removed again and the ``OSError`` is raised.
    """
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        remove_empty_folders(created)
        raise
    return created


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove folders (deepest first, as ``make_folders`` returns them), stopping at the first that is not empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return
