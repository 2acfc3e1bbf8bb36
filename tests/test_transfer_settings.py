"""The plain ``fewzero eval --method <transfer learner> --way W --shot S`` adapts with the settings chosen for that
task shape on validation episodes (paper_results/omniglot_transfer.md), stored in the packaged pretrained backbone
by benchmarks/store_transfer_settings.py."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from benchmark_scripts import load_script

from fewzero.checkpoint import TASK_SETTINGS, learner_from_checkpoint, load_checkpoint, save_checkpoint
from fewzero.cli import main
from fewzero.errors import FewzeroError
from fewzero.pretrained import PACKAGED

REPO = Path(__file__).resolve().parents[1]
TABLE = json.loads((REPO / "paper_results" / "omniglot_transfer.json").read_text())
BACKBONE = PACKAGED / "pretrain_conv4_omniglot.pt"
CELLS = [(method, setting) for method in TABLE["grids"] for setting in TABLE["results"][method]]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _shape(setting: str) -> tuple[int, int]:
    way, shot = setting[:-1].split("w")
    return int(way), int(shot)


@pytest.mark.parametrize("method,setting", CELLS, ids=[f"{m}-{s}" for m, s in CELLS])
def test_the_packaged_backbone_builds_each_learner_with_its_cells_settings(method, setting):
    way, shot = _shape(setting)
    learner = learner_from_checkpoint(BACKBONE, method=method, way=way, shot=shot)[0]
    chosen = TABLE["results"][method][setting]["settings"]
    assert {key: getattr(learner, key) for key in chosen} == chosen


def test_settings_of_the_command_line_win_and_other_shapes_keep_the_defaults(tmp_path):
    copy = tmp_path / "backbone.pt"
    save_checkpoint(copy, {**load_checkpoint(BACKBONE), TASK_SETTINGS: {
        "finetune": {"20w1s": {"freeze": 3, "lr": 0.02, "steps": 7}}, "simpleshot": {"5w5s": {"normalisation": "un"}}}})
    stored = learner_from_checkpoint(copy, method="finetune", way=20, shot=1)[0]
    assert (stored.freeze, stored.lr, stored.steps) == (3, 0.02, 7)
    overridden = learner_from_checkpoint(copy, {"lr": 0.5}, method="finetune", way=20, shot=1)[0]
    assert (overridden.freeze, overridden.lr, overridden.steps) == (3, 0.5, 7)
    from_config = learner_from_checkpoint(copy, method="finetune", way=20, shot=1, learner_settings={"steps": 9})[0]
    assert (from_config.freeze, from_config.steps) == (3, 9)
    for other in (learner_from_checkpoint(copy, method="finetune", way=5, shot=1)[0],
                  learner_from_checkpoint(copy, method="finetune")[0]):  # no shape given: research code's old call
        assert (other.freeze, other.lr, other.steps) == (0, 0.1, 100)  # the learner's defaults
    assert learner_from_checkpoint(copy, method="simpleshot", way=5, shot=5)[0].normalisation == "un"
    assert learner_from_checkpoint(copy, method="logreg", way=5, shot=5)[0].C == 10.0


def test_malformed_stored_settings_are_one_clear_error(tmp_path):
    copy = tmp_path / "backbone.pt"
    save_checkpoint(copy, {**load_checkpoint(BACKBONE), TASK_SETTINGS: {"simpleshot": {"5w1s": "l2n"}}})
    with pytest.raises(FewzeroError, match="malformed task_settings"):
        learner_from_checkpoint(copy, method="simpleshot", way=5, shot=1)


def test_plain_eval_says_which_settings_it_took_and_reproduces_the_cell(omniglot_test, tmp_path, capsys):
    """Fine-tuning 20-way 1-shot (5 of the table's test episodes): the stored freeze=2, lr=0.01, steps=30."""
    result = TABLE["results"]["finetune"]["20w1s"]
    records = tmp_path / "records.json"
    assert main(["eval", "--method", "finetune", "--way", "20", "--shot", "1", "--episodes", "5", "--quiet",
                 "--records", str(records)]) == 0
    out = capsys.readouterr().out
    assert ("finetune settings chosen on validation episodes for 20w1s (stored with the backbone): "
            + ", ".join(f"{k}={v}" for k, v in result["settings"].items())) in out
    report = json.loads(records.read_text())
    assert abs(report["accuracy"] - result["accuracy"]) <= report["ci95"] * 2.58 / 1.96  # a 99 % interval
    assert main(["eval", "--method", "finetune", "--way", "20", "--shot", "1", "--episodes", "1", "--quiet",
                 "--set", "learner.freeze=3", "--set", "learner.lr=0.02", "--set", "learner.steps=1"]) == 0
    assert "stored with the backbone" not in capsys.readouterr().out  # every stored key overridden: no line


def test_storing_the_settings_is_idempotent_and_refuses_other_weights(tmp_path):
    store = load_script("store_transfer_settings")
    payload = load_checkpoint(BACKBONE)
    bare = {k: v for k, v in payload.items() if k != TASK_SETTINGS}
    save_checkpoint(tmp_path / BACKBONE.name, bare)
    note = BACKBONE.with_suffix(".md").read_text()
    (tmp_path / BACKBONE.with_suffix(".md").name).write_text(note.split(f"\n{store.SECTION}\n")[0])
    copy = tmp_path / BACKBONE.name
    assert store.store(TABLE, tmp_path) == [copy, copy.with_suffix(".md")]
    assert load_checkpoint(copy)[TASK_SETTINGS] == payload[TASK_SETTINGS]
    assert _without_size(copy.with_suffix(".md").read_text()) == _without_size(note)
    written = copy.read_bytes(), copy.with_suffix(".md").read_text()
    assert store.store(TABLE, tmp_path) == []
    assert (copy.read_bytes(), copy.with_suffix(".md").read_text()) == written
    payload["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in payload["model"].items()}
    save_checkpoint(copy, payload)
    with pytest.raises(FewzeroError, match="does not hold the weights the table evaluated"):
        store.store(TABLE, tmp_path)


def _without_size(note: str) -> str:
    return re.sub(r"- size: \d+ bytes", "", note)


def test_an_ensemble_member_on_the_backbone_takes_the_settings_of_the_ensembles_task_shape(tmp_path):
    from fewzero.config import load_config
    from fewzero.ensemble_setup import load_member

    copy = tmp_path / "backbone.pt"
    save_checkpoint(copy, {**load_checkpoint(BACKBONE), TASK_SETTINGS: {
        "simpleshot": {"20w1s": {"normalisation": "un"}, "5w1s": {"normalisation": "l2n"}}}})

    def member(way, **spec):
        config = load_config("ensemble", "omniglot", overrides={"test_way": way, "test_shot": 1})
        return load_member({"method": "simpleshot", "checkpoint": str(copy), **spec}, 1, config)[0]

    assert member(20).normalisation == "un" and member(5).normalisation == "l2n"
    assert member(20, settings={"normalisation": "cl2n"}).normalisation == "cl2n"  # the member's settings win
