"""Benchmark provenance: the recorded command reruns as written, arguments with spaces included."""
from __future__ import annotations

import shlex
import sys

from benchmark_scripts import load_script

provenance = load_script("provenance")


def test_recorded_command_splits_back_into_the_arguments(monkeypatch):
    argv = ["benchmarks/mamlpp_ablation.py", "--variants", "no DA (second order from the start)", "--minutes", "15"]
    monkeypatch.setattr(sys, "argv", argv)
    record = provenance.provenance()
    assert shlex.split(record["command"])[1:] == argv
    assert record["commit"] and record["date"].endswith("UTC")


def test_portable_commands_name_paths_from_the_repository_root():
    inside = f"fewzero train --out {provenance.ROOT / 'runs' / 'x'} --config configs/a.yaml"
    assert provenance.portable(inside) == "fewzero train --out runs/x --config configs/a.yaml"
    assert provenance.portable("fewzero train --out /elsewhere/x") == "fewzero train --out /elsewhere/x"


def test_a_finished_run_is_reused_not_run_again(tmp_path):
    cli_run = load_script("cli_run")
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "provenance.json").write_text('{"command": "fewzero train --out x", "commit": "c"}')
    assert cli_run.run_cli(["fewzero", "no-such-command"], tmp_path, None, 1) == {
        "command": "fewzero train --out x", "commit": "c"}


def test_standing_runs_credit_each_part_to_the_last_run_that_wrote_it():
    runs = [{"n": 1, "parts": ["a", "b", "c"]}, {"n": 2, "parts": ["b"]}, {"n": 3, "parts": ["c"]}]
    standing = provenance.standing_runs(runs, ["c"], lambda run: run["parts"])
    assert [(run["n"], parts) for run, parts in standing] == [(1, ["a"]), (2, ["b"])]
    assert provenance.standing_runs(runs, ["a", "b", "c"], lambda run: run["parts"]) == []
    assert [run["n"] for run, _ in provenance.standing_runs(runs, [], lambda run: run["parts"])] == [1, 2, 3]
