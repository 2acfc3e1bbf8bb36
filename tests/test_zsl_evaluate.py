"""Zero-shot evaluator: hand-computed u / s / H, calibration, AUSUC; the full evaluation and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from zsl_synthetic import linear_problem

from fewzero import cli
from fewzero.errors import FewzeroError
from fewzero.evaluate_zsl import (area_under_curve, calibrate_gamma, evaluate_zero_shot, generalized_accuracy,
                                  harmonic_mean, per_class_accuracy, seen_unseen_curve, zero_shot_accuracy)
from fewzero.cli import zero_shot as zsl_cli
from fewzero.zsl.eszsl import ESZSL
from fewzero.zsl.splits import calibration_split

SEEN, UNSEEN = torch.tensor([0, 1]), torch.tensor([2, 3])
# Columns are classes 0..3; 0 and 1 are seen. Comments: best seen class, best unseen class, gap = their difference.
SCORES = torch.tensor([
    [5.0, 1.0, 4.0, 0.0],   # label 0: seen 0 (right), unseen 2, gap 1
    [0.0, 6.0, 3.0, 0.0],   # label 1: seen 1 (right), unseen 2, gap 3
    [2.0, 3.0, 1.0, 0.0],   # label 0: seen 1 (wrong), unseen 2, gap 2
    [3.0, 0.0, 2.5, 1.0],   # label 2: seen 0, unseen 2 (right), gap 0.5
    [0.0, 2.25, 0.0, 1.0],  # label 3: seen 1, unseen 3 (right), gap 1.25
    [1.0, 0.0, 2.0, 0.0],   # label 3: seen 0, unseen 2 (wrong), gap -1
])
LABELS = torch.tensor([0, 1, 0, 2, 3, 3])


def test_per_class_accuracy_weights_every_class_equally():
    pred, truth = torch.tensor([0, 0, 0, 1, 2, 2]), torch.tensor([0, 0, 0, 0, 1, 2])
    # class 0: 3/4, class 1: 0/1, class 2: 1/1; class 7 has no items and is skipped.
    assert per_class_accuracy(pred, truth, [0, 1, 2, 7]) == pytest.approx(100 * (0.75 + 0 + 1) / 3)
    with pytest.raises(FewzeroError):
        per_class_accuracy(pred, truth, [7])


def test_t1_searches_unseen_classes_only():
    # Unseen items only: rows 3, 4, 5 -> predictions among {2, 3}: 2 (right), 3 (right), 2 (wrong).
    assert zero_shot_accuracy(SCORES[3:], LABELS[3:], UNSEEN) == pytest.approx(100 * (1 + 0.5) / 2)


@pytest.mark.parametrize("gamma, u, s", [
    (0.0, 0.0, 75.0),    # seen wins rows 3 and 4: u = mean(0/1, 0/2); s = mean(1/2, 1/1)
    (0.75, 50.0, 75.0),  # row 3 switches to unseen (right)
    (1.125, 50.0, 50.0),  # row 0 switches to unseen (wrong)
    (1.5, 75.0, 50.0),   # row 4 switches to unseen (right)
    (10.0, 75.0, 0.0),   # everything unseen
    (-10.0, 0.0, 75.0),  # everything seen
])
def test_generalized_accuracy_by_hand(gamma, u, s):
    got = generalized_accuracy(SCORES, LABELS, SEEN, UNSEEN, gamma)
    assert got == pytest.approx((u, s, harmonic_mean(u, s)))


def test_harmonic_mean():
    assert harmonic_mean(75.0, 50.0) == pytest.approx(60.0)
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_calibrate_gamma_by_hand():
    # H is 0 at gamma 0 and 60 at 0.75, 1.5 and 2.5 (see above); the default grid keeps the one closest to 0.
    assert calibrate_gamma(SCORES, LABELS, SEEN, UNSEEN) == pytest.approx(0.75)
    assert calibrate_gamma(SCORES, LABELS, SEEN, UNSEEN, grid=[-3.0, 0.0, 1.125, 1.5]) == pytest.approx(1.5)


def test_curve_and_ausuc_by_hand():
    gammas, u, s = seen_unseen_curve(SCORES, LABELS, SEEN, UNSEEN)
    np.testing.assert_allclose(gammas, [-np.inf, -1, 0.5, 1, 1.25, 2, 3])
    np.testing.assert_allclose(u, [0, 0, 50, 50, 75, 75, 75])
    np.testing.assert_allclose(s, [75, 75, 75, 50, 50, 50, 0])
    # Area: 0.5 * 0.75 (u 0 -> 0.5 at s 0.75) + 0.25 * 0.5 (u 0.5 -> 0.75 at s 0.5) = 0.5.
    assert area_under_curve(u, s) == pytest.approx(0.5)


def test_generalized_accuracy_agrees_with_a_direct_argmax():
    g = torch.Generator().manual_seed(3)
    scores, labels = torch.randn(300, 9, generator=g), torch.randint(0, 9, (300,), generator=g)
    seen, unseen = torch.tensor([0, 2, 3, 5, 8]), torch.tensor([1, 4, 6, 7])
    for gamma in (-0.7, 0.0, 0.3, 1.1):
        pred = (scores - gamma * torch.isin(torch.arange(9), seen).float()).argmax(1)
        is_seen = torch.isin(labels, seen)
        u = per_class_accuracy(pred[~is_seen], labels[~is_seen], unseen)
        s = per_class_accuracy(pred[is_seen], labels[is_seen], seen)
        assert generalized_accuracy(scores, labels, seen, unseen, gamma)[:2] == pytest.approx((u, s))


def test_calibration_split_keeps_validation_and_held_out_items_out_of_fitting():
    data = linear_problem(seed=1)
    split = calibration_split(data, seed=0)
    assert torch.equal(split.unseen_classes, data.val_classes)
    assert not set(split.fit_idx.tolist()) & set(split.eval_idx.tolist())
    assert not torch.isin(data.train_y[split.fit_idx], data.val_classes).any()
    held = split.eval_idx[~torch.isin(data.train_y[split.eval_idx], data.val_classes)]
    assert len(held) == 0.2 * 20 * len(split.seen_classes)  # a fifth of each pseudo-seen class's 20 items
    no_val = linear_problem(seed=1, val_every=0)
    assert len(calibration_split(no_val, seed=0).unseen_classes) == 8  # a fifth of the 40 seen classes


def test_evaluate_zero_shot_report_json_and_curve(tmp_path):
    data = linear_problem(seed=2)
    report = evaluate_zero_shot(ESZSL(), data, curve_path=tmp_path / "curve.png")
    assert report.t1 >= 80 and 0 <= report.u <= 100 and report.s >= 80
    assert report.h == pytest.approx(harmonic_mean(report.u, report.s))
    assert report.calibrated_h == pytest.approx(harmonic_mean(report.calibrated_u, report.calibrated_s))
    assert 0 < report.ausuc <= 1 and report.n_seen == 40 and report.n_unseen == 10
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "T1" in str(report) and "\n" not in str(report)
    saved = json.loads(report.save(tmp_path / "report.json").read_text())
    assert saved["t1"] == report.t1 and saved["gamma"] == report.gamma and len(saved["curve"]) > 2


def test_gamma_never_depends_on_test_items():
    data = linear_problem(seed=2)
    gamma = evaluate_zero_shot(ESZSL(), data).gamma
    data.test_unseen_x = torch.randn_like(data.test_unseen_x) * 100
    data.test_seen_x = data.test_seen_x.flip(0)
    assert evaluate_zero_shot(ESZSL(), data).gamma == gamma


def test_run_zero_shot_eval_and_the_command_line(monkeypatch, capsys, tmp_path):
    calls = []

    def fake_load(dataset, semantics, data_root, progress, **options):
        calls.append((dataset, semantics, options))
        return linear_problem(seed=2)

    monkeypatch.setattr(zsl_cli, "load_data", fake_load)
    report = zsl_cli.run_zero_shot_eval("sje", "toy", "text", None, 3, True, {"epochs": 2})
    assert calls[-1] == ("toy", "text", {}) and report.info["learner_args"] == {"seed": 3, "epochs": 2}
    out = capsys.readouterr().out
    assert "T1" in out and "calibrated" in out
    with pytest.raises(FewzeroError, match="no option 'gama'"):
        zsl_cli.run_zero_shot_eval("eszsl", "toy", "attributes", None, 0, True, {"gama": 1.0})
    records = tmp_path / "eszsl.json"
    code = cli.main(["eval", "--method", "eszsl", "--dataset", "toy", "--semantics", "attributes", "--quiet",
                     "--set", "lam=0.5", "--set", "val_split=0", "--records", str(records)])
    assert code == 0 and calls[-1] == ("toy", "attributes", {"val_split": 0})
    assert json.loads(records.read_text())["info"]["learner_args"] == {"lam": 0.5}
    assert (tmp_path / "eszsl_curve.png").is_file()
    assert cli.main(["eval", "--method", "eszsl", "--dataset", "toy", "--set", "learner.nope=1"]) == 2
