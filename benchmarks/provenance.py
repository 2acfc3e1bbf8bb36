"""Provenance recorded beside every benchmark result: command, commit, date, machine."""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def provenance() -> dict:
    import torch

    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),  # quoted: reruns as written
        "commit": git("rev-parse", "HEAD") + (" (with uncommitted changes)" if dirty else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
                   f"({torch.get_num_threads()} threads), Python {platform.python_version()}, {platform.system()}",
        "load_average": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def relative(path) -> str:
    """``path`` relative to the repository root where it lies below it, as the tables record paths."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def flag_values(command: str, flag: str) -> list[str] | None:
    """The words after ``flag`` in a recorded command, up to the next option (None: the command has no ``flag``)."""
    words = shlex.split(command)
    if flag not in words:
        return None
    after = words[words.index(flag) + 1:]
    return after[:next((i for i, word in enumerate(after) if word.startswith("-")), len(after))]


def portable(command: str) -> str:
    """``command`` with this checkout's absolute path removed (benchmarks run from the repository root)."""
    return command.replace(f"{ROOT}{os.sep}", "")


def standing_runs(runs: list[dict], redone, parts_of) -> list[tuple[dict, list[str]]]:
    """The recorded ``runs`` (oldest first) whose results still stand in a report after a run of the ``redone``
    parts, each with the parts it still stands for: a part counts for the last run that wrote it, and a run left
    with none is dropped. ``parts_of(run)`` names the parts a run wrote (a part nobody rewrites keeps its run)."""
    covered, standing = set(redone), []
    for run in reversed(runs):
        parts = [part for part in parts_of(run) if part not in covered]
        if parts:
            standing.append((run, parts))
        covered |= set(parts_of(run))
    return standing[::-1]
