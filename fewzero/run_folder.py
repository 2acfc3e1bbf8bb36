"""The folder of one training run, held by one process at a time.

``RunFolder`` is checked before any work: the path must be a creatable folder; a folder holding a run is resumed
(``resume=True``), replaced (``overwrite=True``) or refused, never silently overwritten; a second process that
tries to use the same folder while a run holds it is refused. If the run fails before writing anything, a folder
it created is removed again, so a failed command leaves nothing behind.
"""
from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from fewzero.atomic import make_folders, remove_empty_folders
from fewzero.errors import FewzeroError

RUN_FILES = ("last.pt", "best.pt", "metrics.json", "metrics.jsonl")
RESUMABLE_KEYS = ("episodes", "epochs", "max_minutes")  # what a resumed run may change in its saved config
RUN_FOLDERS = ("tensorboard",)
LOCK = ".fewzero.lock"


def require_last_checkpoint(path: Path) -> None:
    """A run to resume must have its ``last.pt``."""
    if not (path / "last.pt").is_file():
        raise FewzeroError(f"nothing to resume: {path / 'last.pt'} does not exist (drop --resume to start a new run)")


class RunFolder:
    """Context manager: ``with RunFolder(out, resume=False, overwrite=False) as folder: ...`` (a ``Path``)."""

    def __init__(self, path: str | os.PathLike, *, resume: bool = False, overwrite: bool = False):
        if resume and overwrite:
            raise FewzeroError("--resume continues a run and --overwrite replaces it: give one of them")
        self.path = Path(path)
        self.resume, self.overwrite = resume, overwrite
        self._created: list[Path] = []  # folders this run created, deepest first
        self._lock_file = None

    def _create(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise FewzeroError(f"--out {self.path} is a file, not a folder: choose another --out")
        try:
            self._created = make_folders(self.path)
        except OSError as exc:
            raise FewzeroError(f"cannot create the run folder {self.path} ({exc.strerror or exc}): "
                               f"choose another --out") from None

    def _lock(self) -> None:
        try:
            self._lock_file = open(self.path / LOCK, "a+")
        except OSError as exc:
            self._remove_created()
            raise FewzeroError(f"cannot write in the run folder {self.path} ({exc.strerror or exc}): "
                               f"choose another --out") from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            holder = self._lock_file.read().strip() or "unknown"
            self._lock_file.close()
            self._lock_file = None
            raise FewzeroError(f"{self.path} is in use by another fewzero run (pid {holder}): wait for it to end, "
                               f"or choose another --out") from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(str(os.getpid()))
        self._lock_file.flush()

    def _check_contents(self) -> None:
        held = [name for name in RUN_FILES if (self.path / name).exists()]
        if self.resume:
            require_last_checkpoint(self.path)
        elif held and not self.overwrite:
            raise FewzeroError(f"{self.path} already holds a run ({', '.join(held)}): pass --resume to continue it, "
                               f"--overwrite to replace it, or choose another --out")
        elif held:
            for name in held:
                (self.path / name).unlink()
            for name in RUN_FOLDERS:
                shutil.rmtree(self.path / name, ignore_errors=True)

    def __enter__(self) -> Path:
        self._create()
        self._lock()
        try:
            self._check_contents()
        except BaseException:
            self._release(failed=True)
            raise
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:
        self._release(failed=exc_type is not None)

    def _release(self, failed: bool) -> None:
        if self._lock_file is not None:
            (self.path / LOCK).unlink(missing_ok=True)
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None
        if failed:
            self._remove_created()

    def _remove_created(self) -> None:
        """Remove the folders this run created, as far as the run left them empty."""
        remove_empty_folders(self._created)
        self._created = []
