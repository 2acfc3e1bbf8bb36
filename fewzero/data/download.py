"""Downloading with a progress bar, an MD5 check and no partial files."""
from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from fewzero.atomic import atomic_path, make_folders, remove_empty_folders
from fewzero.errors import DataNotFoundError, FewzeroError

OFFLINE_HINT = ("put the files there yourself, or point --data-root / FEWZERO_DATA at a folder that has them")


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _make_folder(folder: Path) -> list[Path]:
    try:
        return make_folders(folder)
    except OSError as exc:
        raise DataNotFoundError(f"cannot create the folder {folder} ({exc.strerror or exc}): point --data-root / "
                                f"FEWZERO_DATA at a folder you can write to") from None


def download(url: str, dest: Path, md5: str | None = None, timeout: float = 30.0, progress: bool = True) -> Path:
    """Fetch ``url`` to ``dest`` through a temporary file beside it; rename only when complete and (if given) the MD5 matches.

    Folders created for ``dest`` are removed again when nothing could be downloaded (a mistyped data root leaves
    nothing behind).

    Raises:
        DataNotFoundError: the server cannot be reached (offline) or answers with an error.
        FewzeroError: the MD5 of the downloaded file is wrong (the file is removed).
    """
    dest = Path(dest)
    created = _make_folder(dest.parent)
    try:
        return _fetch(url, dest, md5, timeout, progress)
    except DataNotFoundError:
        remove_empty_folders(created)
        raise


def _fetch(url: str, dest: Path, md5: str | None, timeout: float, progress: bool) -> Path:
    from tqdm import tqdm

    with atomic_path(dest, suffix=".part") as part:  # renamed to dest only when complete and checked
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {dest.name}",
                          disable=not progress, leave=False) as bar:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        out.write(block)
                        bar.update(len(block))
                if total is not None and out.tell() != total:
                    raise DataNotFoundError(f"download of {url} stopped after {out.tell()} of {total} bytes: "
                                            f"try again")
        except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:  # ValueError: a malformed URL
            reason = getattr(exc, "reason", exc)
            raise DataNotFoundError(f"could not download {url} ({reason}) and {dest} is missing: "
                                    f"{OFFLINE_HINT}") from None
        if md5 is not None:
            got = md5sum(part)
            if got != md5:
                raise FewzeroError(f"MD5 of {url} is {got}, expected {md5}: the download is corrupt or the server "
                                   f"sent another file; try again, or place a good copy at {dest}")
    return dest
