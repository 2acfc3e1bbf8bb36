"""The live run log (fewzero.runlog) and learning-curve plots (fewzero.plot)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fewzero.errors import FewzeroError
from fewzero.plot import _series, plot_runs
from fewzero.runlog import LOG_KINDS, RunLog, read_metrics


def _strict_json(text: str):
    """json.loads that refuses NaN/Infinity (which Python's json would otherwise accept)."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def _write_run(run: Path, records: list[dict]) -> Path:
    with RunLog(run) as log:
        for record in records:
            log.record(**record)
    return run


def _curve(n: int, *, offset: float = 0.0) -> list[dict]:
    return [{"step": i, "episode": 4 * i, "seconds": 0.5 * i, "train_loss": 2.0 / (i + 1) + offset,
             "val_accuracy": 50 + 4 * i - offset, "val_ci95": 1.5} for i in range(1, n + 1)]


# ---- RunLog / read_metrics ------------------------------------------------------------------------------------

def test_records_round_trip(tmp_path):
    records = [{"step": 1, "episode": 4, "train_loss": 0.6931471805599453, "val_accuracy": 81.25, "lr": 1e-3,
                "method": "protonet", "stopped": False, "extra": [1, 2.5, None]},
               {"step": 2, "tasks": 8, "val_ci95": 0.1}]
    with RunLog(tmp_path / "run") as log:
        written = [log.record(**record) for record in records]
    assert written == records
    assert read_metrics(tmp_path / "run") == records
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and [_strict_json(line) for line in lines] == records
    assert LOG_KINDS == ("jsonl", "tensorboard")


@settings(max_examples=15, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10),
                                 st.floats(allow_nan=False, allow_infinity=False)), max_size=6))
def test_any_finite_record_round_trips(record):
    with tempfile.TemporaryDirectory() as folder:
        RunLog(folder).record(**record)
        assert read_metrics(folder) == [record]


def test_non_finite_numbers_are_written_as_null(tmp_path):
    log = RunLog(tmp_path)
    written = log.record(step=1, train_loss=float("nan"), lr=float("inf"), grad=-math.inf, nested=[math.nan, 1.0],
                         np_loss=np.float32("nan"), t_acc=torch.tensor(75.5), np_step=np.int64(3))
    text = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    expected = {"step": 1, "train_loss": None, "lr": None, "grad": None, "nested": [None, 1.0], "np_loss": None,
                "t_acc": 75.5, "np_step": 3}
    assert _strict_json(text) == expected == written == read_metrics(tmp_path)[0]


def test_log_appends_across_runs_and_refuses_records_after_close(tmp_path):
    _write_run(tmp_path, [{"step": 1}])
    log = RunLog(tmp_path)  # a resumed run goes on in the same file
    log.record(step=2)
    log.close()
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.record(step=3)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_incomplete_last_line_is_skipped(tmp_path):
    _write_run(tmp_path, [{"step": 1}, {"step": 2}])
    path = tmp_path / "metrics.jsonl"
    with open(path, "ab") as handle:
        handle.write(b'{"step": 3, "val_accuracy": 8')  # a run is writing this line right now
    assert read_metrics(tmp_path) == [{"step": 1}, {"step": 2}]
    with open(path, "ab") as handle:
        handle.write(b'\xc3')  # half of a UTF-8 character
    assert read_metrics(tmp_path) == [{"step": 1}, {"step": 2}]
    path.write_bytes(b'{"step": 1}\n{"step": 2}')  # whole record, newline not yet written
    assert read_metrics(tmp_path) == [{"step": 1}, {"step": 2}]


@pytest.mark.parametrize("bad", [b'{"step": 2, "val', b"[1, 2]", b'{"step": 2}}'])
def test_corrupt_middle_line_is_an_error(tmp_path, bad):
    (tmp_path / "metrics.jsonl").write_bytes(b'{"step": 1}\n' + bad + b'\n{"step": 3}\n')
    with pytest.raises(FewzeroError, match=r"metrics.jsonl line 2 .*delete that line") as error:
        read_metrics(tmp_path)
    assert "\n" not in str(error.value)
    (tmp_path / "metrics.jsonl").write_bytes(b'{"step": 1}\n' + bad + b"\n")  # complete last line: also corrupt
    with pytest.raises(FewzeroError, match="line 2"):
        read_metrics(tmp_path)


def test_missing_folder_or_log_is_an_error(tmp_path):
    with pytest.raises(FewzeroError, match="does not exist: pass the --out folder"):
        read_metrics(tmp_path / "nope")
    with pytest.raises(FewzeroError, match="metrics.jsonl does not exist"):
        read_metrics(tmp_path)


# ---- TensorBoard ----------------------------------------------------------------------------------------------

def test_tensorboard_scalars_are_written(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with RunLog(tmp_path, tensorboard=True) as log:
        log.record(step=1, episode=4, train_loss=1.5, val_accuracy=60.0, method="protonet", lr=float("nan"))
        log.record(step=2, episode=8, train_loss=0.75, val_accuracy=70.5, lr=1e-3)
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and all(event.stat().st_size > 0 for event in events)
    accumulator = EventAccumulator(str(tmp_path / "tensorboard"))
    accumulator.Reload()
    assert set(accumulator.Tags()["scalars"]) == {"episode", "train_loss", "val_accuracy", "lr"}
    loss = accumulator.Scalars("train_loss")
    assert [e.step for e in loss] == [1, 2] and [e.value for e in loss] == pytest.approx([1.5, 0.75])
    assert [e.value for e in accumulator.Scalars("val_accuracy")] == pytest.approx([60.0, 70.5])
    assert [(e.step, e.value) for e in accumulator.Scalars("lr")] == [(2, pytest.approx(1e-3))]  # NaN skipped
    assert len(read_metrics(tmp_path)) == 2  # the JSON lines are written as well


def test_tensorboard_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now raises ImportError
    with pytest.raises(FewzeroError, match=r"pip install 'fewzero\[tensorboard\]'"):
        RunLog(tmp_path, tensorboard=True)


def test_heavy_parts_are_imported_lazily():
    code = ("import sys, fewzero.runlog, fewzero.plot; "
            "print(sorted(m for m in ('matplotlib', 'tensorboard', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---- plots ----------------------------------------------------------------------------------------------------

def _colour_pixels(png: Path, rgb: tuple[int, int, int]) -> int:
    from PIL import Image

    with Image.open(png) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(rgb)).sum(axis=2) < 40).sum())


BLUE, ORANGE = (31, 119, 180), (255, 127, 14)  # matplotlib's C0 and C1


def test_plot_one_run(tmp_path):
    run = _write_run(tmp_path / "protonet", _curve(5))
    out = plot_runs(run, tmp_path / "plots" / "curves.png")
    assert out == tmp_path / "plots" / "curves.png" and out.stat().st_size > 0
    from PIL import Image

    with Image.open(out) as image:
        image.verify()
    with Image.open(out) as image:
        low, high = image.convert("L").getextrema()
        assert image.size[0] > 100 and image.size[1] > 100 and high - low > 100  # not blank
    assert _colour_pixels(out, BLUE) > 50 and _colour_pixels(out, ORANGE) == 0
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]


def test_plot_two_runs_draws_both(tmp_path):
    runs = [_write_run(tmp_path / "a", _curve(4)), _write_run(tmp_path / "b", _curve(6, offset=5.0))]
    out = plot_runs(runs, tmp_path / "both.png", metrics=["val_accuracy"])
    assert _colour_pixels(out, BLUE) > 50 and _colour_pixels(out, ORANGE) > 50


def test_x_axis_falls_back_to_seconds_then_record_number():
    records = [{"seconds": 1.0, "val_accuracy": 50.0, "val_ci95": 2.0}, {"train_loss": 1.0},
               {"seconds": 3.0, "val_accuracy": None}, {"seconds": 4.0, "val_accuracy": 60.0}]
    assert _series(records, "val_accuracy", "episode") == ("seconds", [1.0, 4.0], [50.0, 60.0],
                                                           [2.0, pytest.approx(math.nan, nan_ok=True)])
    assert _series(records, "train_loss", "episode")[:3] == ("record", [1.0], [1.0])
    assert _series([{"episode": 8, "seconds": 1, "val_accuracy": 9}], "val_accuracy", "episode")[:2] == (
        "episode", [8.0])


def test_plot_draws_runs_without_the_x_key(tmp_path):
    run = _write_run(tmp_path / "old", [{"val_accuracy": 50.0 + i, "train_loss": 1.0 / (i + 1)} for i in range(3)])
    assert plot_runs(run, tmp_path / "p.png").stat().st_size > 0


def _no_files_but(folder: Path, *names: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def test_missing_metric_is_an_error_and_writes_nothing(tmp_path):
    runs = [_write_run(tmp_path / "a", _curve(2)), _write_run(tmp_path / "b", [{"step": 1, "train_loss": 1.0}])]
    with pytest.raises(FewzeroError, match=r"no run logged a value of 'test_accuracy': choose among .*val_ci95"):
        plot_runs(runs, tmp_path / "out.png", metrics=("val_accuracy", "test_accuracy"))
    _no_files_but(tmp_path, "a", "b")
    plot_runs(runs, tmp_path / "out.png")  # a metric missing from some runs only is fine


def test_no_records_is_an_error(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    with pytest.raises(FewzeroError, match="no records yet"):
        plot_runs([tmp_path / "run"], tmp_path / "out.png")
    with pytest.raises(FewzeroError, match="no run folders"):
        plot_runs([], tmp_path / "out.png")
    with pytest.raises(FewzeroError, match="end in .png"):
        plot_runs(tmp_path / "run", tmp_path / "out.pdf")


def test_unwritable_place_is_an_error(tmp_path):
    run = _write_run(tmp_path / "run", _curve(2))
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(FewzeroError, match="cannot write .*choose a writable place") as error:
        plot_runs(run, tmp_path / "file" / "out.png")
    assert "\n" not in str(error.value)
    _no_files_but(tmp_path, "run", "file")


def test_failed_write_leaves_no_partial_png(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken_savefig(self, path, **kwargs):
        Path(path).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    run = _write_run(tmp_path / "run", _curve(2))
    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(FewzeroError, match="No space left on device"):
        plot_runs(run, tmp_path / "out.png")
    _no_files_but(tmp_path, "run")
