import json

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import precision_recall_fscore_support

from fewzero.backbones import Conv4, Identity
from fewzero.evaluate import confusion_matrix, evaluate, macro_precision_recall_f1, mean_confidence_interval
from fewzero.learners import ProtoNet
from fewzero.sampling import EpisodeSampler


def test_confidence_interval_matches_numpy():
    rng = np.random.default_rng(0)
    values = rng.uniform(60, 100, size=1000)
    mean, ci = mean_confidence_interval(values)
    assert mean == pytest.approx(np.mean(values))
    assert ci == pytest.approx(1.96 * np.std(values, ddof=1) / np.sqrt(len(values)))
    assert mean_confidence_interval([42.0]) == (42.0, 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_and_macro_scores_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 5, 200)
    pred = np.where(rng.random(200) < 0.6, truth, rng.integers(0, 5, 200))
    pred[pred == 4] = 3  # class 4 never predicted: precision 0 for it
    conf = confusion_matrix(torch.as_tensor(truth), torch.as_tensor(pred), 5)
    assert conf.tolist() == sk_confusion(truth, pred, labels=range(5)).tolist()
    p, r, f1, _ = precision_recall_fscore_support(truth, pred, labels=range(5), average="macro", zero_division=0)
    assert macro_precision_recall_f1(conf) == pytest.approx((p, r, f1))


def test_report_numbers_come_from_the_episodes(omniglot_test, tmp_path):
    sampler = EpisodeSampler(omniglot_test.labels, 5, 1, 3, 40, seed=0)
    report = evaluate(ProtoNet(Identity()), omniglot_test, sampler, progress=False)
    accs = [r["accuracy"] for r in report.records]
    assert report.n_episodes == 40 and len(accs) == 40
    assert (report.accuracy, report.ci95) == pytest.approx(mean_confidence_interval(accs))
    assert sum(map(sum, report.confusion)) == 40 * 5 * 3
    assert np.trace(np.array(report.confusion)) == pytest.approx(report.accuracy / 100 * 600)
    saved = json.loads(report.save(tmp_path / "r.json").read_text())
    assert saved["records"][3] == report.records[3] and saved["accuracy"] == report.accuracy


def test_embedding_reuse_gives_the_same_logits_as_per_episode(omniglot_test):
    learner = ProtoNet(Conv4())
    sampler = EpisodeSampler(omniglot_test.labels, 5, 2, 4, 25, seed=5)
    fast = evaluate(learner, omniglot_test, sampler, progress=False)
    slow = evaluate(learner, omniglot_test, sampler, progress=False, reuse_embeddings=False)
    assert [r["accuracy"] for r in fast.records] == [r["accuracy"] for r in slow.records]
    assert learner.training, "evaluate restores the learner's mode"
