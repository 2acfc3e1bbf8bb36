"""The MAML++ benchmark scripts: the ablation's variants are valid configs that flip what they say, and the
time-to-accuracy report reads runs' histories correctly."""
from __future__ import annotations

import json

from benchmark_scripts import load_script

from fewzero.config import command_line_overrides, load_config

ablation = load_script("mamlpp_ablation")
tta = load_script("time_to_accuracy")


FLIPPED = {"all on": set(), "no MSL (multi-step loss)": {"learner.multi_step_loss"},
           "no BNWB + BNRS (per-step batch norm)": {"learner.per_step_bn_weights", "learner.per_step_bn_statistics"},
           "no LSLR (learned step sizes)": {"learner.learned_inner_lr"},
           "no DA (second order from the start)": {"learner.derivative_order_annealing"},
           "no CA (constant outer lr)": {"lr_schedule", "lr_gamma"}}


def _config(sets):
    overrides, origins = command_line_overrides(sets, {})
    return load_config("mamlpp", "omniglot", ablation.ROOT / ablation.CONFIG, overrides, origins)


def test_every_ablation_variant_is_a_valid_config_flipping_its_component():
    base = _config(ablation.VARIANTS["all on"])
    assert base.lr_schedule == "cosine" and all(
        base.learner[k] for k in ("multi_step_loss", "per_step_bn_weights", "per_step_bn_statistics",
                                  "learned_inner_lr", "derivative_order_annealing"))
    assert set(ablation.VARIANTS) == set(FLIPPED)
    folders = set()
    for label, sets in ablation.VARIANTS.items():
        config = _config(sets)
        changed = {k for k in ("lr_schedule", "lr_gamma") if getattr(config, k) != getattr(base, k)} | {
            f"learner.{k}" for k in config.learner if config.learner[k] != base.learner.get(k)}
        assert changed == FLIPPED[label], label
        folders.add(ablation.run_folder(label, ablation.ROOT / "runs" / "x"))
    assert len(folders) == len(ablation.VARIANTS)  # no two variants share a run folder
    shipped = [label for label, sets in ablation.VARIANTS.items() if not sets]
    assert shipped == ["no DA (second order from the start)"]  # the config as shipped: the benchmark's own run
    assert ablation.run_folder(shipped[0], ablation.ROOT / "runs" / "x") == (
        ablation.ROOT / "runs" / "benchmark" / "mamlpp_20way")


def test_ablation_table_marks_missing_variants():
    row = {"accuracy": 91.234, "ci95": 0.2, "episodes_done": 100, "train_seconds": 120, "best_val_accuracy": 90.0,
           "command": "fewzero train ...", "provenance": {"commit": "abc", "date": "d"},
           "evaluated": {"command": "python x", "commit": "abc", "date": "d"}}
    text = ablation.render({"variants": {"all on": row}})
    assert "| all on | 91.23 ± 0.20 | 100 | 2.0 | 90.00 |" in text
    assert text.count("not run yet") == len(ablation.VARIANTS) - 1


def test_time_to_accuracy_curves_and_report(tmp_path):
    history = [{"seconds": 60.0 * m, "val_accuracy": a} for m, a in ((1, 70.0), (2, 86.0), (4, 91.0))]
    points = tta.curve({"history": history})
    assert points == [(1.0, 70.0), (2.0, 86.0), (4.0, 91.0)]
    assert tta.minutes_to(points, 85) == 2.0 and tta.minutes_to(points, 95) is None
    tta.plot({"maml": points, "protonet": [(0.5, 90.0)]}, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = {"command": "fewzero train", "episodes_done": 10, "train_seconds": 240, "best_val_accuracy": 91.0,
           "provenance": {"commit": "c"}, "curve": points, "minutes_to": {"85": 2.0, "95": None}}
    text = tta.render({"levels": [85.0, 95.0], "runs": {"maml": run}, "note": "",
                       "provenance": {"command": "python b", "commit": "c", "date": "d"}})
    assert "| maml | 10 | 4.0 | 91.00 | 2.0 | — |" in text
    json.dumps(run)  # the report is plain JSON



def test_ablation_budget_scales_the_config_and_keeps_runs_apart():
    base = load_config("mamlpp", "omniglot", ablation.ROOT / ablation.CONFIG)
    assert (base.max_minutes, base.episodes, base.val_every, base.meta_batch) == (
        ablation.FULL_MINUTES, ablation.FULL_EPISODES, ablation.FULL_VAL_EVERY, ablation.META_BATCH)
    assert ablation.budget_sets(ablation.FULL_MINUTES) == []
    overrides, origins = command_line_overrides(ablation.VARIANTS["no DA (second order from the start)"]
                                                + ablation.budget_sets(14), {})
    config = load_config("mamlpp", "omniglot", ablation.ROOT / ablation.CONFIG, overrides, origins)
    assert (config.episodes, config.val_every, config.max_minutes) == (7000, 496, 14)
    assert config.learner["derivative_order_annealing"] is False
    runs = ablation.ROOT / "runs" / "x"
    full = {ablation.run_folder(label, runs) for label in ablation.VARIANTS}
    short = {ablation.run_folder(label, runs, 14) for label in ablation.VARIANTS}
    assert len(short) == len(ablation.VARIANTS) and not full & short  # "all on" is retrained under a short budget
    assert ablation.output_path(14) != ablation.output_path(ablation.FULL_MINUTES)
    assert "`--minutes 14`" in ablation.render({"variants": {}}, 14)


def test_ablation_repeats_with_other_seeds_show_their_spread():
    runs = ablation.ROOT / "runs" / "x"
    assert ablation.run_folder("all on", runs, 15, seed=1) != ablation.run_folder("all on", runs, 15)
    assert ablation.run_folder("all on", runs, seed=1) != ablation.run_folder("all on", runs)  # not the table's run
    row = {"accuracy": 81.3, "ci95": 0.3, "episodes_done": 5904, "train_seconds": 900, "best_val_accuracy": 81.8,
           "command": f"fewzero train --out {runs}", "provenance": {"commit": "abc", "date": "d"},
           "evaluated": {"command": "python x", "commit": "abc", "date": "d"}}
    table = {"variants": {"all on": row}, "repeats": {"all on": {"1": {**row, "accuracy": 82.05}}}}
    text = ablation.render(table, 15)
    assert "- all on: seed 0 81.30 ± 0.30, seed 1 82.05 ± 0.30; max − min 0.75 points" in text
    assert "- all on, seed 1: `fewzero train --out runs/x`" in text


def test_time_to_accuracy_keeps_recorded_runs_beside_a_new_one():
    def run(commit, points):
        return {"command": "fewzero train", "episodes_done": 1, "train_seconds": 60, "best_val_accuracy": 90.0,
                "provenance": {"commit": commit}, "curve": points, "minutes_to": {}}

    recorded = {"maml": run("a", [[1.0, 86.0]]), "mamlpp": run("b", [[2.0, 80.0], [5.0, 88.0]]),
                "mamlpp (earlier run)": run("z", [[9.0, 70.0]]), "protonet": run("c", [[0.5, 91.0]])}
    new = {"mamlpp": run("d", [(1.0, 85.0), (3.0, 91.0)])}
    runs = tta.with_recorded(new, recorded, [85.0, 90.0])
    assert list(runs) == ["maml", "mamlpp", "mamlpp (earlier run)", "protonet"]
    assert runs["mamlpp"]["provenance"] == {"commit": "d"} and runs["mamlpp (earlier run)"]["provenance"] == {
        "commit": "b"}  # the run it replaces, not the one before that
    assert runs["mamlpp"]["minutes_to"] == {"85": 1.0, "90": 3.0}
    assert runs["mamlpp (earlier run)"]["minutes_to"] == {"85": 5.0, "90": None}
    assert runs["maml"]["minutes_to"] == {"85": 1.0, "90": None}
    again = tta.with_recorded({"mamlpp": recorded["mamlpp"]}, recorded, [85.0])  # the same run again: kept as it was
    assert list(again) == list(recorded) and again["mamlpp (earlier run)"]["provenance"] == {"commit": "z"}
