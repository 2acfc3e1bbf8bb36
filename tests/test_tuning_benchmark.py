"""benchmarks/tuning.py: how trials-to-target and best-so-far curves are counted, and the report's verdicts."""
from __future__ import annotations

from benchmark_scripts import load_script


def test_trials_to_reach_counts_the_first_trial_at_or_above_the_target():
    tuning = load_script("tuning")
    assert tuning.best_so_far([1.0, None, 3.0, 2.0]) == [1.0, 1.0, 3.0, 3.0]
    assert tuning.trials_to_reach([1.0, None, 3.0, 2.0], 3.0) == 3
    assert tuning.trials_to_reach([1.0, 2.0], 3.0) is None
    assert tuning.trials_to_reach([3.0], 3.0) == 1


def _learner(half: bool, reached):
    seeds = [{"seed": s, "best_val": 1.0, "reached_grid_best_at": r, "curve": [1.0], "test": 2.0}
             for s, r in enumerate(reached)]
    sampler = {"seeds": seeds, "median_best_val": 1.0, "median_trials_to_grid_best": 1}
    return {"kind": "zero-shot", "grid_points": 10, "grid": {"best_val": 1.0, "curve": [1.0], "test": 2.0},
            "tpe": sampler, "random": sampler, "tpe_half_budget": half}


def test_the_report_states_the_targets_verdicts(tmp_path):
    report_module = load_script("tuning_report")
    prov = {"command": "c", "commit": "x", "date": "d", "machine": "m", "load_average": "0"}
    learners = {f"l{k}": _learner(k < 3, [1, None, 4]) for k in range(5)}
    learners["l1"]["grid"]["at_edge"], learners["l2"]["grid"]["at_edge"] = ["lam (low)"], []
    pruning = {"none": {"trial_seconds": 100.0, "best_val": 90.0, "best_ci95": 1.0, "states": {"COMPLETE": 4, "PRUNED": 0, "FAIL": 0},
                        "reports": [5, 5, 5, 5]},
               "median": {"trial_seconds": 40.0, "best_val": 90.0, "best_ci95": 1.0, "speedup": 2.5,
                          "states": {"COMPLETE": 2, "PRUNED": 2, "FAIL": 0}, "reports": [5, 5, 1, 1]},
               "hyperband": {"trial_seconds": 60.0, "best_val": 86.0, "best_ci95": 1.0, "speedup": 1.67,
                             "states": {"COMPLETE": 2, "PRUNED": 2, "FAIL": 0}, "reports": [5, 5, 2, 2]},
               "val_episodes": 30, "budget": {"episodes": 100}, "fixed": {"train_way": 20}, "params": ["lr"]}
    report = {"provenance": prov, "seeds": [0, 1, 2], "learners": learners, "pruning": pruning, "seconds": 60}
    report_module.write_report(report, tmp_path)
    text = (tmp_path / "tuning.md").read_text()
    assert "3 of 5 (l0, l1, l2): missed" in text
    assert "| 1, never, 4 |" in text
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| l")}
    assert rows["| l1"].endswith("| lam (low) |") and rows["| l2"].endswith("| no |")
    assert rows["| l0"].endswith("| – |")  # not recorded
    assert "median: 2.50x, best 90.00 ± 1.00 vs 90.00 ± 1.00 without (equal within CI): met" in text
    assert "hyperband: 1.67x, best 86.00 ± 1.00 vs 90.00 ± 1.00 without (lower beyond CI): missed" in text
    assert (tmp_path / "tuning.png").read_bytes()[:4] == b"\x89PNG"
    assert "few-shot learners' checkpoints: not recorded" in text
    backbones = load_script("tuning").few_shot_backbones(["logreg"])
    assert backbones["logreg"]["checkpoint"] == "fewzero/pretrained/pretrain_conv4_omniglot.pt"
    report_module.write_report({**report, "few_shot_backbones": backbones}, tmp_path)
    digest = backbones["logreg"]["weights_digest"][:12]
    assert f"logreg: `fewzero/pretrained/pretrain_conv4_omniglot.pt` (weights digest {digest})" in (
        tmp_path / "tuning.md").read_text()


def test_the_committed_table_renders_again_from_its_json(tmp_path):
    import shutil

    tuning = load_script("tuning")
    shutil.copyfile(tuning.ROOT / "paper_results" / "tuning.json", tmp_path / "tuning.json")
    tuning.main(["--render-only", "--out", str(tmp_path)])
    assert (tmp_path / "tuning.md").read_text() == (tuning.ROOT / "paper_results" / "tuning.md").read_text()
    assert (tmp_path / "tuning.png").read_bytes()[:4] == b"\x89PNG"


def test_a_best_at_a_range_end_is_marked_plateau_when_the_next_grid_point_scores_the_same():
    from fewzero.tune import parse_space

    tuning = load_script("tuning")
    space = parse_space({"method": "logreg", "params": {
        "C": {"type": "float", "low": 0.01, "high": 1.0, "log": True, "grid": [0.01, 0.1, 1.0]},
        "norm": {"type": "categorical", "choices": [True, False]}}})

    def trials(scores):
        return [{"params": {"C": c, "norm": n}, "value": v} for (c, n), v in scores.items()]

    flat = {(0.01, True): 99.0, (0.1, True): 99.0, (1.0, True): 98.0, (0.01, False): 97.0}
    assert tuning.edges(space, trials(flat), {"C": 0.01, "norm": True}) == ["C (low, plateau)"]
    rising = {**flat, (0.1, True): 98.5}
    assert tuning.edges(space, trials(rising), {"C": 0.01, "norm": True}) == ["C (low)"]
    assert tuning.edges(space, trials({**flat, (1.0, True): 99.5}), {"C": 1.0, "norm": True}) == ["C (high)"]
    assert tuning.edges(space, trials(rising), {"C": 0.1, "norm": True}) == []
