"""Run one `fewzero train` / `fewzero pretrain` of a benchmark with the real CLI: reuse it when finished, resume it
when killed, record its command and provenance in ``<folder>/provenance.json`` when it starts."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from provenance import ROOT, provenance

from fewzero.atomic import write_text


def run_cli(command: list[str], folder: Path, data_root: str | None, threads: int) -> dict:
    """Run ``command`` (``["fewzero", "train", ..., "--out", folder]``) unless ``folder`` holds a finished run;
    return the run's provenance (with ``command``)."""
    if not (folder / "metrics.json").is_file():
        resume = (folder / "last.pt").is_file()
        if not resume:
            folder.mkdir(parents=True, exist_ok=True)
            write_text(folder / "provenance.json", json.dumps({**provenance(), "command": shlex.join(command),
                                                               "threads": threads}, indent=1))
        full = [sys.executable, "-m", *command, *(["--resume"] if resume else []),
                *(["--data-root", data_root] if data_root else [])]
        print("$", shlex.join(full[2:]), flush=True)
        subprocess.run(full, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, check=True)
    path = folder / "provenance.json"
    return json.loads(path.read_text()) if path.is_file() else {"command": shlex.join(command)}
