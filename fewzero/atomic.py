"""Write files so that a reader (or a killed run) never sees half of one."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """``write_text`` of ``value`` as indented JSON (objects JSON cannot hold are written as strings)."""
    return write_text(path, json.dumps(value, indent=1, default=str) + "\n")
