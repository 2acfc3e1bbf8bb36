"""benchmarks/omniglot.py and its parts (omniglot_settings, _training, _table): tables merge per setting, render
what is missing, and the memory trace sees growth."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from benchmark_scripts import load_script

REPO = Path(__file__).resolve().parents[1]




def _trained(model: str, way: int) -> dict:
    config = {"backbone": "conv4_strided", "train_way": way, "train_shot": 1, "train_query": 5, "meta_batch": 16,
              "lr": 0.001, "lr_gamma": 0.5, "lr_step": 40000, "seed": 0, "precision": "fp32",
              "learner": {"inner_lr": 0.4, "inner_steps": 1, "test_inner_steps": 3, "batch_norm": "transductive"}}
    return {"command": f"fewzero train ... {model}", "train_seconds": 600.0, "episodes_done": 1000, "best_episode": 900,
            "best_val_accuracy": 90.0, "stopped_early": True, "config": config,
            "provenance": {"commit": "abc", "date": "2026-11-22 10:00 UTC", "load_average": "0 / 0 / 0"}}


def _evaluated(settings: dict[str, float], model: str) -> dict:
    return {"results": {k: {"accuracy": acc, "ci95": 0.2, "model": model} for k, acc in settings.items()},
            "eval_memory": {"setting": next(iter(settings)), "episodes": 1000, "growth_mib": 0.3,
                            "peak_per_tenth_mib": [300.0] * 10}}


def test_models_merge_per_setting_and_missing_settings_say_so():
    bench = load_script("omniglot_table")
    started = {"command": "python benchmarks/omniglot.py", "commit": "abc", "date": "d", "machine": "m",
               "load_average": "0"}
    table: dict = {"test_episodes": 1000, "queries_per_class": 15}
    bench.merge(table, "maml", {"5-way": _trained("5-way", 5)}, _evaluated({"5w1s": 98.0, "5w5s": 99.6}, "5-way"),
                started, "")
    md = bench.render(table)
    assert "| maml | 20w1s | not run yet | 95.8 | 95.3 |" in md
    assert "| maml | 5w1s | 98.00 ± 0.20 | 98.7 | 98.2 | no | 5-way |" in md
    assert "| maml | 5w5s | 99.60 ± 0.20 | 99.9 | 99.4 | yes | 5-way |" in md
    resumed = _trained("20-way", 20)
    resumed["provenance"]["resumed"] = [{"commit": "def", "date": "2026-11-23 09:00 UTC", "load_average": "1 / 1 / 1"}]
    bench.merge(table, "maml", {"20-way": resumed}, _evaluated({"20w1s": 95.5}, "20-way"), started, "")
    results = table["methods"]["maml"]["results"]
    assert set(results) == {"5w1s", "5w5s", "20w1s"}  # the 5-way model's settings are kept
    assert set(table["methods"]["maml"]["evaluation"]) == {"5-way", "20-way"}
    md = bench.render(table)
    assert "| maml | 20w1s | 95.50 ± 0.20 | 95.8 | 95.3 | yes | 20-way |" in md
    assert "Batch norm at test time: transductive" in md
    assert "started 2026-11-22 10:00 UTC (load average 0 / 0 / 0); resumed at commit def, 2026-11-23 09:00 UTC" in md
    assert md.count("(flat: no graph is kept beyond one task)") == 2
    table["methods"]["maml"]["evaluation"]["20-way"]["eval_memory"]["growth_mib"] = 40.0
    assert "+40.0 MiB (growing" in bench.render(table)


def test_chosen_test_inner_lr_is_reported_beside_the_training_one():
    bench = load_script("omniglot_table")
    started = {"command": "python benchmarks/omniglot.py", "commit": "abc", "date": "d", "machine": "m",
               "load_average": "0"}
    evaluated = _evaluated({"20w1s": 95.5, "20w5s": 97.1}, "20-way")
    evaluated["results"]["20w5s"].update({"training_inner_lr": {"accuracy": 68.0, "ci95": 0.9, "f1": 60.0, "lr": 0.4},
                                          "test_inner_lr": 0.05})
    table: dict = {"test_episodes": 1000, "queries_per_class": 15}
    md = bench.render(bench.merge(table, "anil", {"20-way": _trained("20-way", 20)}, evaluated, started, ""))
    assert "| anil | 20w5s | 97.10 ± 0.20 | 68.00 ± 0.90 (lr 0.4) | 0.05 | 98.9 | 98.4 | no | 20-way |" in md
    assert "| anil | 20w1s | 95.50 ± 0.20 | not measured | | 95.8 | 95.3 | yes |" in md
    assert "chosen for that setting on 200 validation episodes" in md


def test_inner_lr_grid_and_choice_on_validation(monkeypatch):
    import fewzero.evaluate
    import fewzero.train

    selection = load_script("inner_lr_selection")
    assert selection.lr_grid(0.4) == [0.4, 0.2, 0.1, 0.05, 0.025, 0.0125]

    class Learner:
        inner_lr, test_inner_lr = 0.4, 0.4

    accuracy = {0.4: 70.0, 0.2: 90.0, 0.1: 90.0, 0.05: 80.0, 0.025: 60.0, 0.0125: 50.0}  # a tie keeps the larger
    monkeypatch.setattr(fewzero.evaluate, "evaluate",
                        lambda learner, *a, **k: type("Report", (), {"accuracy": accuracy[learner.test_inner_lr]}))
    monkeypatch.setattr(fewzero.train, "episode_sampler", lambda *a: None)
    learner = Learner()
    chosen, scores = selection.choose_test_inner_lr(learner, None, None, 10)
    assert chosen == 0.2 and learner.test_inner_lr == 0.2
    assert scores == {f"{lr:g}": acc for lr, acc in accuracy.items()}


def test_settings_map_to_the_model_that_serves_them(tmp_path, monkeypatch):
    bench = load_script("omniglot_settings")
    assert [bench.model_for("maml", w, s) for w, s in bench.SETTINGS] == ["5-way", "5-way", "20-way", "20-way"]
    # where a config meta-trains a model on one setting, that model serves the setting
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "maml_omniglot_20way_5shot.yaml").write_text("method: maml\n")
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    assert [bench.model_for("maml", w, s) for w, s in bench.SETTINGS] == ["5-way", "5-way", "20-way", "20-way-5-shot"]
    assert bench.models_of("maml")["20-way-5-shot"] == "configs/maml_omniglot_20way_5shot.yaml"
    assert bench.model_for("anil", 20, 5) == "20-way"
    monkeypatch.undo()
    assert [bench.model_for("protonet", w, s) for w, s in bench.SETTINGS] == ["1-shot", "5-shot", "1-shot", "5-shot"]
    for method in ("maml", "fomaml", "anil"):
        assert bench.table_of(method) == "maml"
        for config in bench.models_of(method).values():
            assert (REPO / config).is_file(), config


@pytest.mark.parametrize("grow", [False, True])
def test_memory_trace_tells_growth_from_flat(grow):
    memory = load_script("omniglot_memory")
    kept = []

    def work():
        import mmap
        import time

        for _ in range(40):
            # 4 MiB of anonymous memory, touched so that it is resident. mmap rather than bytearray: malloc keeps
            # freed blocks (e.g. from the flat run) and hands them out again without RSS growth; munmap does not.
            block = mmap.mmap(-1, 4 * 2**20)
            block[::4096] = b"x" * len(block[::4096])
            if grow:
                kept.append(block)
            else:
                block.close()
            time.sleep(0.01)
        return "done"

    result, trace = memory.trace_rss(work, every_s=0.005)
    assert result == "done" and len(trace["peak_per_tenth_mib"]) == 10
    if grow:
        assert trace["growth_mib"] > 100  # 160 MiB kept over the run
    else:
        assert abs(trace["growth_mib"]) < 20


def test_packaged_models_are_found_under_the_names_fewzero_eval_uses(tmp_path, monkeypatch):
    import fewzero.pretrained as pretrained

    bench = load_script("omniglot_settings")
    monkeypatch.setattr(pretrained, "PACKAGED", tmp_path)
    for stem in ("protonet_omniglot", "maml_omniglot", "maml_omniglot_20way", "maml_omniglot_20way_5shot"):
        (tmp_path / f"{stem}.pt").write_bytes(b"")
    named = {model: bench.packaged_checkpoint("maml", model).name for model in ("5-way", "20-way", "20-way-5-shot")}
    assert named == {"5-way": "maml_omniglot.pt", "20-way": "maml_omniglot_20way.pt",
                     "20-way-5-shot": "maml_omniglot_20way_5shot.pt"}
    assert bench.packaged_checkpoint("protonet", "1-shot").name == "protonet_omniglot.pt"
    for method, model in (("protonet", "5-shot"), ("anil", "20-way")):
        with pytest.raises(SystemExit, match=f"ships no {method} {model} model"):
            bench.packaged_checkpoint(method, model)


@pytest.mark.parametrize("parallel", [False, True])
def test_interrupting_the_benchmark_stops_its_training_processes(tmp_path, monkeypatch, parallel):
    """Killing benchmarks/omniglot.py must not leave `fewzero train` running with no one to evaluate it."""
    bench = load_script("omniglot_training")
    started = []

    class Training:  # stands in for subprocess.Popen: the first wait is interrupted (Ctrl-C or SIGTERM)
        def __init__(self, cmd, **kwargs):
            self.terminated, self.returncode = False, None
            started.append(self)

        def wait(self):
            if self.returncode is None and not self.terminated:
                raise KeyboardInterrupt
            return self.returncode

        def poll(self):
            return self.returncode

        def terminate(self):
            self.terminated, self.returncode = True, -15

    monkeypatch.setattr(bench.subprocess, "Popen", Training)
    monkeypatch.setattr(bench, "provenance", lambda: {"commit": "abc", "date": "now", "load_average": "0"})
    models = {"5-way": "configs/maml_omniglot.yaml", "20-way": "configs/maml_omniglot_20way.yaml"}
    with pytest.raises(KeyboardInterrupt):
        bench.train_models("maml", models, tmp_path, None, quick=False, threads=1, parallel=parallel)
    assert len(started) == (2 if parallel else 1)
    assert all(process.terminated for process in started)


def test_the_script_offers_every_flag(monkeypatch, capsys):
    bench = load_script("omniglot")
    monkeypatch.setattr(bench.signal, "signal", lambda *args: None)  # leave pytest's SIGTERM handling alone
    monkeypatch.setattr(sys, "argv", ["omniglot.py", "--help"])
    with pytest.raises(SystemExit):
        bench.main()
    usage = capsys.readouterr().out
    for flag in ("--method", "--models", "--data-root", "--runs", "--episodes", "--threads", "--parallel", "--note",
                 "--quick", "--render-only", "--packaged"):
        assert flag in usage, flag
