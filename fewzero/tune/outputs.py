"""What a study leaves in ``--out``: ``best.yaml``, ``trials.csv``, ``summary.json`` and PNG plots."""
from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Any

import yaml

from fewzero.atomic import atomic_path, write_json, write_text

PLOTS = {
    "history.png": "plot_optimization_history",
    "importances.png": "plot_param_importances",
    "parallel.png": "plot_parallel_coordinate",
}


def trial_rows(study) -> list[dict[str, Any]]:
    """One row per trial: number, state, value, each searched key, seconds, intermediate reports, process."""
    names = sorted({name for trial in study.trials for name in trial.params})
    rows = []
    for trial in study.trials:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
            if trial.datetime_complete and trial.datetime_start else None
        rows.append({"number": trial.number, "state": trial.state.name, "value": trial.value,
                     **{f"param_{name}": trial.params.get(name) for name in names},
                     "seconds": None if seconds is None else round(seconds, 2),
                     "reports": len(trial.intermediate_values), "pid": trial.user_attrs.get("pid"),
                     "error": trial.user_attrs.get("error", "")})
    return rows


def write_trials_csv(study, path: Path) -> Path:
    rows = trial_rows(study)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return write_text(path, buffer.getvalue())


def best_trial(study):
    """The completed trial with the best value (None when no trial completed)."""
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def write_best_yaml(path: Path, config: dict[str, Any], header: list[str]) -> Path:
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(config, sort_keys=False)
    return write_text(path, text)


def write_plots(study, out: Path) -> dict[str, str]:
    """Optuna's matplotlib plots; a plot that cannot be drawn yet (too few trials) is skipped with its reason."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as plots

    skipped: dict[str, str] = {}
    for name, function in PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                axes = getattr(plots, function)(study)
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            with atomic_path(out / name) as tmp:
                figure.savefig(tmp, dpi=100, format="png")
            plt.close(figure)
        except Exception as exc:  # e.g. importances need two complete trials with different values
            plt.close("all")
            (out / name).unlink(missing_ok=True)
            skipped[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return skipped


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    return write_json(out / "summary.json", summary)
