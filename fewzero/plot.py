"""Learning curves of one or more runs from their live logs (``metrics.jsonl``), as one PNG.

    plot_runs(["runs/protonet", "runs/maml"], "curves.png")  # validation accuracy ± CI and training loss

matplotlib is imported only here, and only when a plot is drawn.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from fewzero.atomic import atomic_path
from fewzero.errors import FewzeroError
from fewzero.runlog import read_metrics

RECORD = "record"  # the x axis when a run logged neither the chosen key nor seconds: the record's number


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (missing, ``null``, not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _series(records: list[dict[str, Any]], metric: str, x: str) -> tuple[str, list[float], list[float], list[float]]:
    """(x key used, xs, ys, 95% CI half-widths or NaN) of the records that hold a number for ``metric``.

    The x key is ``x`` if every such record has it, else ``seconds`` if every one has that, else the record number.
    A metric ``*accuracy`` takes its band from ``*ci95`` (``val_accuracy`` from ``val_ci95``).
    """
    rows = [(index, record) for index, record in enumerate(records) if _number(record.get(metric)) is not None]
    x_key = next((key for key in (x, "seconds") if all(_number(r.get(key)) is not None for _, r in rows)), RECORD)
    ci_key = metric[: -len("accuracy")] + "ci95" if metric.endswith("accuracy") else None
    xs = [float(index) if x_key == RECORD else _number(r[x_key]) for index, r in rows]
    ys = [_number(r[metric]) for _, r in rows]
    cis = [_number(r.get(ci_key)) if ci_key else None for _, r in rows]
    return x_key, xs, ys, [math.nan if ci is None else ci for ci in cis]


def plot_runs(run_dirs: str | os.PathLike | Iterable[str | os.PathLike], out_png: str | os.PathLike, *,
              x: str = "episode", metrics: Sequence[str] = ("val_accuracy", "train_loss")) -> Path:
    """Draw ``metrics`` (one panel each) against ``x`` for every run (one line each, named by its folder).

    Args:
        run_dirs: A run folder, or several (each holding ``metrics.jsonl``).
        out_png: Where to write the PNG (atomically: a failure leaves no file).
        x: The record key of the x axis; a run without it is drawn against ``seconds``, else the record number.
        metrics: Record keys to draw; an ``*accuracy`` key gets a ± band from its ``*ci95`` key when logged.

    Returns:
        The path of the PNG.
    """
    runs = [Path(run_dirs)] if isinstance(run_dirs, (str, os.PathLike)) else [Path(run) for run in run_dirs]
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    out = Path(out_png)
    if not runs:
        raise FewzeroError("no run folders given: pass the --out folder of at least one training run")
    if not metrics:
        raise FewzeroError("no metrics given: name at least one logged key, e.g. val_accuracy")
    if out.suffix.lower() != ".png":
        raise FewzeroError(f"the plot is a PNG, but {out} does not end in .png: give a .png path")
    logs = [(run.resolve().name or str(run), read_metrics(run)) for run in runs]
    if not any(records for _, records in logs):
        raise FewzeroError(f"no records yet in {', '.join(str(run) for run in runs)}: "
                           "wait for the first validation, then plot again")
    for metric in metrics:
        if not any(_number(record.get(metric)) is not None for _, records in logs for record in records):
            keys = sorted({key for _, records in logs for record in records for key in record})
            raise FewzeroError(f"no run logged a value of {metric!r}: choose among the logged keys "
                               f"{', '.join(keys)}")

    from matplotlib.figure import Figure  # no pyplot: no global backend to set, no GUI, nothing left open

    figure = Figure(figsize=(7.0, 3.0 * len(metrics)), dpi=100, constrained_layout=True)
    axes = figure.subplots(len(metrics), 1, squeeze=False)[:, 0]
    for axis, metric in zip(axes, metrics):
        x_keys = set()
        for color, (label, records) in enumerate(logs):
            x_key, xs, ys, cis = _series(records, metric, x)
            if not xs:
                continue
            x_keys.add(x_key)
            name = label if x_key == x else f"{label} (by {x_key})"
            axis.plot(xs, ys, color=f"C{color}", marker="o", markersize=3, linewidth=1.5, label=name)
            if any(not math.isnan(ci) for ci in cis):
                axis.fill_between(xs, [y - ci for y, ci in zip(ys, cis)], [y + ci for y, ci in zip(ys, cis)],
                                  color=f"C{color}", alpha=0.2, linewidth=0)
        axis.set_ylabel(metric)
        axis.set_xlabel(" / ".join(sorted(x_keys, key=lambda key: (key != x, key))))
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    try:
        with atomic_path(out, suffix=".png") as tmp:
            figure.savefig(tmp, format="png")
    except OSError as err:
        raise FewzeroError(f"cannot write {out} ({err.strerror or err}): choose a writable place for the plot") \
            from None
    return out
