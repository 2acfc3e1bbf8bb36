"""The live log of a training run: one JSON record a line in ``<run>/metrics.jsonl`` (and TensorBoard scalars).

A run appends a record whenever it has news (a validation, a time tick); a reader (``read_metrics``,
``fewzero plot``, ``tail -f``) can watch the file while the run writes it.

    with RunLog(out, tensorboard=True) as log:
        log.record(step=10, episode=40, train_loss=0.71, val_accuracy=88.2, val_ci95=0.9)
    read_metrics(out)  # [{"step": 10, "episode": 40, ...}]
"""
from __future__ import annotations

import importlib
import json
import math
import os
from pathlib import Path
from typing import Any

from fewzero.atomic import append_line
from fewzero.errors import FewzeroError

LOG_KINDS = ("jsonl", "tensorboard")
LOG_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _plain(value: Any) -> Any:
    """``value`` as plain JSON: non-finite floats become ``None``; numpy/torch values become Python numbers."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "tolist"):  # numpy scalar or array, tensor
        return _plain(value.tolist())
    return str(value)


class RunLog:
    """Appends records to ``<run_dir>/metrics.jsonl``; with ``tensorboard=True`` also to ``<run_dir>/tensorboard``.

    Args:
        run_dir: The run's folder (created if missing). An existing log is appended to, so a resumed run goes on.
        tensorboard: Also write each numeric value as a TensorBoard scalar, at global step ``step``.
    """

    def __init__(self, run_dir: str | os.PathLike, *, tensorboard: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOG_FILE
        self._writer = None
        self._count = 0
        self._closed = False
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise FewzeroError(f"cannot create the run folder {self.run_dir} ({err.strerror}): "
                               "choose another --out") from None
        if tensorboard:
            try:
                importlib.import_module("tensorboard")  # torch.utils.tensorboard needs it
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise FewzeroError("--log tensorboard needs the tensorboard package: "
                                   "pip install 'fewzero[tensorboard]'") from None
            self._writer = SummaryWriter(log_dir=str(self.run_dir / TENSORBOARD_DIR))

    def record(self, **values: Any) -> dict[str, Any]:
        """Append one record (any keys) and return it as written; non-finite numbers are written as ``null``.

        TensorBoard gets one scalar per finite numeric value other than ``step``, at global step ``step`` (the
        record's number if there is no ``step``).
        """
        if self._closed:
            raise ValueError(f"the run log of {self.run_dir} is closed")
        record = _plain(values)
        append_line(self.path, json.dumps(record, allow_nan=False))
        if self._writer is not None:
            step = record.get("step")
            step = step if isinstance(step, int) and not isinstance(step, bool) else self._count
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(key, value, global_step=step)
            self._writer.flush()  # a watcher sees every record at once
        self._count += 1
        return record

    def close(self) -> None:
        """Flush and close the TensorBoard writer (the JSON lines are on disk already). Safe to call twice."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._closed = True

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``<run_dir>/metrics.jsonl``, oldest first.

    A last line without its newline is a record being written and is skipped unless it is already whole JSON;
    any other line that is not a JSON object is an error.
    """
    run_dir = Path(run_dir)
    path = run_dir / LOG_FILE
    if not run_dir.is_dir():
        raise FewzeroError(f"run folder {run_dir} does not exist: pass the --out folder of a training run")
    if not path.is_file():
        raise FewzeroError(f"{path} does not exist: the run has not logged a record yet "
                           "(or was trained before live logs); wait for its first validation or train it again")
    lines = path.read_bytes().split(b"\n")
    last = len(lines) - 1  # the piece after the last newline: b"" for a finished file, else a partial record
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            if number - 1 == last:
                break  # being written right now
            raise FewzeroError(f"{path} line {number} is not JSON ({err}): the log is corrupt; "
                               "delete that line to read the rest") from None
        if not isinstance(record, dict):
            raise FewzeroError(f"{path} line {number} is not a JSON object: the log is corrupt; "
                               "delete that line to read the rest")
        records.append(record)
    return records
