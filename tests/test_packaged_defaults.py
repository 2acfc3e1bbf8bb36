"""The plain ``fewzero eval --method M --way W --shot S`` reproduces paper_results/omniglot_maml.md: each packaged
MAML-family model carries the test-time step size chosen on validation episodes (benchmarks/store_test_inner_lr.py).

The evaluations run the first N of the table's 1000 fixed test episodes (episode i depends only on the test seed and
i), so the table's value must lie inside the run's confidence interval, which is wider at N episodes. With one
check per cell (14 cells), 95 % intervals would miss a right value about every other run of the suite by chance
alone; the interval is widened to a 95 % family-wise level (Bonferroni: z = 2.91 instead of 1.96). A wrong step size
still fails by far (ANIL 20-way 5-shot: 67 % against 97 %).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from benchmark_scripts import load_script

from fewzero.checkpoint import learner_from_checkpoint, load_checkpoint, save_checkpoint
from fewzero.cli import main
from fewzero.config import load_config
from fewzero.errors import FewzeroError

REPO = Path(__file__).resolve().parents[1]
TABLE = json.loads((REPO / "paper_results" / "omniglot_maml.json").read_text())
# test episodes per setting: all fourteen cells take about 13 s of one CPU thread on a quiet machine; MAML's and
# FOMAML's 20-way 5-shot episodes (3 inner steps on 100 support images) are the slowest, about 0.15 s each, 20-way
# 1-shot about 0.06 s, 5-way about 0.03 s, ANIL's a third of those
EPISODES = {"5w1s": 20, "5w5s": 20, "20w1s": 20, "20w5s": 12}


def _widened(ci95: float) -> float:
    """A 95 % confidence half-width widened to a 95 % family-wise level over the table's cells (Bonferroni)."""
    from statistics import NormalDist

    cells = sum(len(cells) for cells in MODELS.values())
    return ci95 * NormalDist().inv_cdf(1 - 0.025 / cells) / NormalDist().inv_cdf(0.975)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _packaged(method: str, model: str) -> Path:
    from fewzero.pretrained import PACKAGED

    return PACKAGED / f"{load_script('omniglot_settings').model_stems(method)[model]}.pt"


def _models() -> dict[tuple[str, str], dict[str, dict]]:
    """{(method, model): {setting: the table's result}} for every packaged model of the table."""
    models: dict[tuple[str, str], dict[str, dict]] = {}
    for method, entry in TABLE["methods"].items():
        for setting, result in entry["results"].items():
            models.setdefault((method, result["model"]), {})[setting] = result
    return models


MODELS = _models()


def _shape(setting: str) -> tuple[int, int]:
    way, shot = re.fullmatch(r"(\d+)w(\d+)s", setting).groups()
    return int(way), int(shot)


def _eval(method: str, setting: str, episodes: int, tmp_path: Path, capsys, *extra: str) -> tuple[dict, str]:
    """(the report `fewzero eval` writes, its stdout) of the plain command for one cell of the table."""
    way, shot = _shape(setting)
    records = tmp_path / f"{method}_{setting}.json"
    rc = main(["eval", "--method", method, "--dataset", "omniglot", "--way", str(way), "--shot", str(shot),
               "--episodes", str(episodes), "--quiet", "--records", str(records), *extra])
    out, err = capsys.readouterr()
    assert rc == 0, err
    report = json.loads(records.read_text())
    assert (report["n_way"], report["n_shot"], report["n_episodes"]) == (way, shot, episodes)
    assert report["n_query"] == TABLE["queries_per_class"]
    return report, out


def test_the_table_covers_every_packaged_maml_family_model():
    from fewzero.pretrained import PACKAGED

    packaged = {path for method in TABLE["methods"] for path in PACKAGED.glob(f"{method}_omniglot*.pt")}
    assert packaged and packaged == {_packaged(method, model) for method, model in MODELS}
    assert set(EPISODES) == {setting for cells in MODELS.values() for setting in cells}


@pytest.mark.parametrize("method,model", sorted(MODELS), ids=[f"{m}-{n}" for m, n in sorted(MODELS)])
def test_packaged_model_stores_the_step_size_chosen_per_shot(method, model):
    path = _packaged(method, model)
    learner, config, _ = learner_from_checkpoint(path)
    chosen = {setting: result for setting, result in MODELS[method, model].items() if "test_inner_lr" in result}
    if not chosen:  # MAML++ learns its step sizes per layer and step (LSLR): none was chosen, none is stored
        assert getattr(learner, "step_lrs", None) is not None and not learner.test_inner_lr_by_shot
        return
    for setting, result in chosen.items():
        assert learner.eval_inner_lr(_shape(setting)[1]) == result["test_inner_lr"], setting
    assert learner.eval_inner_lr(10) == learner.inner_lr  # a shot count the table does not choose for
    overridden = learner_from_checkpoint(path, {"test_inner_lr": 0.3})[0]
    assert {overridden.eval_inner_lr(_shape(s)[1]) for s in chosen} == {0.3}
    # the note beside the model shows the saved config and says how the step sizes were chosen
    note = path.with_suffix(".md").read_text()
    block = re.search(r"Config \(as saved in the checkpoint\):\n\n```yaml\n(.*?)```", note, re.S)[1]
    assert yaml.safe_load(block) == load_checkpoint(path)["config"]
    section = note[note.index("## Test-time step size"):]
    for setting, result in chosen.items():
        assert f"- {_shape(setting)[1]}-shot: {result['test_inner_lr']:g} (" in section
    assert "200 validation episodes" in section and "--set learner.test_inner_lr=LR" in section


@pytest.mark.parametrize("method,model", sorted(MODELS), ids=[f"{m}-{n}" for m, n in sorted(MODELS)])
def test_plain_eval_reproduces_the_table(method, model, omniglot_test, tmp_path, capsys):
    path = _packaged(method, model)
    saved = load_checkpoint(path)["config"]
    eval_config = load_config(method, "omniglot")
    assert eval_config.test_seed == saved["test_seed"]  # the table's episodes: the packaged model's test seed
    outside = []
    for setting, result in MODELS[method, model].items():
        report, out = _eval(method, setting, EPISODES[setting], tmp_path, capsys)
        assert f"from {path}" in out
        if abs(report["accuracy"] - result["accuracy"]) > _widened(report["ci95"]):
            outside.append(f"{setting}: table {result['accuracy']:.2f}, eval {report['accuracy']:.2f} "
                           f"+- {_widened(report['ci95']):.2f} (family-wise) at {EPISODES[setting]} episodes")
    assert not outside, outside


@pytest.mark.parametrize("setting", ["test_inner_lr={lr}", "test_inner_lr_by_shot={{5: {lr}}}"],
                         ids=["test_inner_lr", "test_inner_lr_by_shot"])
def test_without_the_stored_step_size_anil_20_way_5_shot_is_far_worse(setting, omniglot_test, tmp_path, capsys):
    result = TABLE["methods"]["anil"]["results"]["20w5s"]
    training_lr = result["training_inner_lr"]["lr"]
    assert result["test_inner_lr"] != training_lr
    override = "learner." + setting.format(lr=f"{training_lr:g}")
    report, out = _eval("anil", "20w5s", 10, tmp_path, capsys, "--set", override)
    assert f"inner_lr {training_lr:g};" in out
    assert report["accuracy"] < 85.0
    # it is the table's "ours at the training inner lr"
    assert abs(report["accuracy"] - result["training_inner_lr"]["accuracy"]) <= report["ci95"]


def test_a_step_size_per_shot_that_is_not_a_mapping_is_one_clear_error(capsys):
    assert main(["eval", "--method", "anil", "--way", "20", "--shot", "5", "--episodes", "1", "--quiet",
                 "--set", "learner.test_inner_lr_by_shot=0.1"]) == 2
    assert capsys.readouterr().err == (
        "fewzero: error: config key 'learner.test_inner_lr_by_shot' (from --set learner.test_inner_lr_by_shot=0.1) "
        "must be a mapping such as {1: 0.4, 5: 0.1} (or null), got 0.1\n")


def test_storing_the_step_sizes_is_idempotent(tmp_path):
    """benchmarks/store_test_inner_lr.py writes the packaged files from the table, and a rerun changes none."""
    store = load_script("store_test_inner_lr")
    package = load_script("package_checkpoint")
    method, model = "anil", "20-way"
    shipped = _packaged(method, model)
    copy = tmp_path / shipped.name
    payload = load_checkpoint(shipped)
    payload["config"]["learner"].pop("test_inner_lr_by_shot")
    save_checkpoint(copy, payload)
    bare = package.with_step_size_section(shipped.with_suffix(".md").read_text(), None)
    copy.with_suffix(".md").write_text(store._with_config(bare, payload["config"], shipped))
    table = {"methods": {method: TABLE["methods"][method]}}
    assert store.store(table, tmp_path) == [copy, copy.with_suffix(".md")]
    assert load_checkpoint(copy)["config"] == load_checkpoint(shipped)["config"]
    assert _without_size(copy.with_suffix(".md").read_text()) == _without_size(shipped.with_suffix(".md").read_text())
    written = copy.read_bytes(), copy.with_suffix(".md").read_text()
    assert store.store(table, tmp_path) == []
    assert (copy.read_bytes(), copy.with_suffix(".md").read_text()) == written
    shutil.copyfile(shipped, tmp_path / "maml_omniglot_20way.pt")  # not the model the table evaluated for maml
    with pytest.raises(FewzeroError, match="is not the maml 20-way model that the table evaluated"):
        store.store({"methods": {"maml": TABLE["methods"]["maml"]}}, tmp_path)


def _without_size(note: str) -> str:
    """A model's note without its size line (a copy's checkpoint differs in the name of its zip archive)."""
    return re.sub(r"- size: \d+ bytes", "", note)


def test_packaging_a_run_keeps_its_step_sizes_per_shot(tmp_path, monkeypatch, capsys):
    import sys

    import fewzero.pretrained

    package = load_script("package_checkpoint")
    run, shipped = tmp_path / "run", _packaged("anil", "20-way")
    run.mkdir()
    shutil.copyfile(shipped, run / "best.pt")
    (run / "metrics.json").write_text(json.dumps({"best_val_accuracy": 87.5, "best_val_ci95": 1.5, "best_episode": 8,
                                                  "episodes_done": 9, "train_seconds": 60.0, "stopped_early": False}))
    monkeypatch.setattr(fewzero.pretrained, "PACKAGED", tmp_path / "packaged")
    (tmp_path / "packaged").mkdir()
    monkeypatch.setattr(sys, "argv", ["package_checkpoint.py", str(run), "--per-way"])
    package.main()
    note = (tmp_path / "packaged" / shipped.with_suffix(".md").name).read_text()
    assert "- 1-shot: 0.05\n- 5-shot: 0.05\n" in note and "Set in the training run's config." in note
    assert "test_inner_lr_by_shot:\n    1: 0.05\n    5: 0.05\n" in note
    assert "note:" not in capsys.readouterr().out
