"""Shared by the catalogue of bad inputs (tests/test_bad_inputs*.py): run the CLI and check its one error line,
damage the tiny Omniglot, and make good, damaged and malicious checkpoints.

A plain module (the test files ``from bad_input_helpers import ...``); the fixtures here are bound to a name in
each test file that uses them (``checkpoints = bad_input_helpers.checkpoints``).
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch

from fewzero.checkpoint import build_learner, save_checkpoint
from fewzero.cli import main
from fewzero.config import load_config
from fewzero.registry import DATASETS

OFFLINE = "http://127.0.0.1:9/"  # nothing listens on the discard port: every download fails at once


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Each case gets its own empty cache, no data by default, and no network."""
    monkeypatch.setenv("FEWZERO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FEWZERO_DATA", str(tmp_path / "no-data-here"))
    monkeypatch.setenv("FEWZERO_OMNIGLOT_URL", OFFLINE)
    monkeypatch.setenv("FEWZERO_VINYALS_URL", OFFLINE)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and folder under ``folder`` (but the cache) with its size and modification time."""
    if not folder.exists():
        return {}
    out = {".": ("dir",)}
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if relative.parts[0] == "cache":
            continue
        stat = path.stat()
        out[str(relative)] = ("dir",) if path.is_dir() else (stat.st_size, stat.st_mtime_ns)
    return out


def cache_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def one_error_line(rc: int, err: str) -> str:
    """The single ``fewzero: error:`` line of a failed command (asserting everything else about stderr)."""
    assert rc == 2, f"exit status {rc}, stderr: {err!r}"
    assert "Traceback" not in err and "Warning" not in err, err
    assert "\r" not in err and err.endswith("\n") and err.count("\n") == 1, f"not exactly one line: {err!r}"
    assert err.startswith("fewzero: error: "), err
    return err.rstrip("\n")


def run_in_process(capfd, argv: list) -> tuple[int, str, str]:
    """``fewzero argv`` in this process: (exit status, stdout, stderr)."""
    capfd.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        rc = exc.code
    out, err = capfd.readouterr()
    return rc, out, err


def fails(capfd, tmp_path: Path, argv: list[str], *fragments: str, absent: tuple[str, ...] = ()) -> str:
    """Run ``fewzero argv`` in-process: one error line holding every fragment and none of ``absent``; nothing new
    (and no partial file) under ``tmp_path``; no temporary file in the cache."""
    before = snapshot(tmp_path)
    rc, out, err = run_in_process(capfd, argv)
    line = one_error_line(rc, err)
    for fragment in fragments:
        assert fragment in line, line
    for fragment in absent:
        assert fragment not in line, line
    assert snapshot(tmp_path) == before, "files changed or were left behind"
    assert not [p for p in cache_files(tmp_path) if ".tmp" in p.name or p.name.endswith(".part")]
    return line


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def replace_zip(root: Path, archive: str, entries: dict[str, bytes]) -> Path:
    path = root / "omniglot" / f"{archive}.zip"
    path.write_bytes(zip_bytes(entries))
    return path


def extract(root: Path) -> None:
    """Turn the tiny zips into the extracted-folder layout."""
    for archive in ("images_background", "images_evaluation"):
        path = root / "omniglot" / f"{archive}.zip"
        with zipfile.ZipFile(path) as zipped:
            zipped.extractall(root / "omniglot")
        path.unlink()


def _untrained(method: str, **config_changes) -> dict:
    """The payload of an untrained, narrow (hidden width 8) checkpoint, optionally with a changed config."""
    overrides = {"backbone_args.hidden": 8, **({"learner.feature_dim": 8} if method != "protonet" else {})}
    config = load_config(method, "omniglot", overrides=overrides)
    return {"config": {**config.to_dict(), **config_changes}, "in_channels": 1,
            "model": build_learner(config).state_dict()}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Checkpoints by name: good protonet and maml ones, and damaged, foreign or malicious ones."""
    folder = tmp_path_factory.mktemp("checkpoints")
    good = _untrained("protonet")
    made = {"protonet": save_checkpoint(folder / "protonet.pt", good),
            "maml": save_checkpoint(folder / "maml.pt", _untrained("maml")),
            "no_config": save_checkpoint(folder / "no_config.pt", {"model": good["model"]}),
            "bad_backbone_args": save_checkpoint(folder / "bad_args.pt",
                                                 _untrained("protonet", backbone_args={"hidden": "wide"})),
            "other_dataset": save_checkpoint(folder / "tinyglot.pt", _untrained("protonet", dataset="tinyglot")),
            "folder": save_checkpoint(folder / "run" / "best.pt", good).parent,
            "truncated": folder / "truncated.pt", "pickled_code": folder / "pickled_code.pt",
            "marker": folder / "code-ran"}
    whole = made["protonet"].read_bytes()
    made["truncated"].write_bytes(whole[: len(whole) // 2])
    torch.save({"format": "fewzero-checkpoint-v1", **good, "note": RunsCode(made["marker"])}, made["pickled_code"])
    return made


class RunsCode:
    """An object whose unpickling would create a file: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def tinyglot(monkeypatch):
    """A second few-shot dataset name (for the lifetime of one test) so that a checkpoint can be of another one."""
    from fewzero.data.omniglot import omniglot

    DATASETS.get("omniglot")
    monkeypatch.setitem(DATASETS._entries, "tinyglot", omniglot)


@pytest.fixture
def unavailable_cuda() -> str:
    """A CUDA device this machine lacks: ``cuda`` on a CPU-only build, else one past the last GPU."""
    return "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"


def eval_args(checkpoint: Path, root: Path | str, *extra) -> list:
    return ["eval", "--method", "protonet", "--checkpoint", checkpoint, "--data-root", root, "--quiet", *extra]


def train_args(out: Path, root: Path | str, *extra) -> list:
    return ["train", "--method", "protonet", "--out", out, "--data-root", root, "--quiet", "--episodes", "2",
            "--train-way", "5", "--set", "val_every=2", "--set", "val_episodes=2", "--set", "backbone_args.hidden=8",
            *extra]
