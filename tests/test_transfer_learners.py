"""The transfer learners against oracles (scikit-learn, closed forms), and built on a pretrained checkpoint."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestCentroid
from torch.nn import functional as F

from fewzero.backbones import Identity
from fewzero.checkpoint import PRETRAINED_KIND, learner_from_checkpoint, save_checkpoint
from fewzero.config import load_config
from fewzero.errors import FewzeroError
from fewzero.learners.baseline import Baseline, BaselinePlusPlus
from fewzero.learners.finetune import FineTune
from fewzero.learners.logreg import LogisticRegressionLearner
from fewzero.learners.simpleshot import SimpleShot
from fewzero.registry import BACKBONES

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def features(way=5, shot=3, query=7, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 2 * torch.randn(way, dim, generator=g) + 1.0
    support = centres.repeat_interleave(shot, 0) + torch.randn(way * shot, dim, generator=g)
    queries = centres.repeat_interleave(query, 0) + torch.randn(way * query, dim, generator=g)
    return support, torch.arange(way).repeat_interleave(shot), queries


def test_simpleshot_is_nearest_centroid_on_centred_normalised_features():
    support, labels, queries = features()
    base_mean = torch.randn(16)
    learner = SimpleShot(Identity())
    learner.use_base_statistics({"base_mean": base_mean})
    predicted = learner.fit(support, labels)(queries).argmax(1)
    transform = lambda z: F.normalize(z - base_mean, dim=1).numpy()  # noqa: E731
    oracle = NearestCentroid().fit(transform(support), labels.numpy()).predict(transform(queries))
    np.testing.assert_array_equal(predicted.numpy(), oracle)


def test_simpleshot_l2n_ignores_the_base_mean():
    support, labels, queries = features()
    learner = SimpleShot(Identity(), normalisation="l2n")
    learner.use_base_statistics({"base_mean": torch.randn(16)})
    oracle = NearestCentroid().fit(F.normalize(support, dim=1).numpy(), labels.numpy())
    np.testing.assert_array_equal(learner.fit(support, labels)(queries).argmax(1).numpy(),
                                  oracle.predict(F.normalize(queries, dim=1).numpy()))


@pytest.mark.parametrize("way", [2, 5])
def test_logreg_equals_a_direct_scikit_learn_fit(way):
    support, labels, queries = features(way=way)
    logits = LogisticRegressionLearner(Identity(), C=0.5).fit(support, labels)(queries)
    direct = LogisticRegression(C=0.5, max_iter=1000).fit(F.normalize(support, dim=1).numpy(), labels.numpy())
    expected = direct.predict_proba(F.normalize(queries, dim=1).numpy())
    np.testing.assert_allclose(torch.softmax(logits.double(), 1).numpy(), expected, atol=1e-5)


def test_baselinepp_logits_are_scaled_cosine_similarities():
    support, labels, queries = features()
    learner = BaselinePlusPlus(Identity(), scale=7.0, steps=20).fit(support, labels)
    weight = learner.head_.weight
    expected = 7.0 * F.normalize(queries, dim=1) @ F.normalize(weight, dim=1).T
    torch.testing.assert_close(learner(queries), expected)


def test_baseline_learns_the_support_set():
    support, labels, queries = features()
    learner = Baseline(Identity(), steps=200, lr=0.1).fit(support, labels)
    assert (learner(support).argmax(1) == labels).float().mean() == 1.0


def test_finetune_with_every_block_frozen_is_the_baseline():
    torch.manual_seed(0)
    backbone = BACKBONES.create("conv4", in_channels=1, hidden=8).eval()
    x, y = torch.rand(10, 1, 28, 28), torch.arange(5).repeat(2)
    queries = torch.rand(6, 1, 28, 28)
    tuned = FineTune(backbone, freeze=4, steps=30, lr=0.1).eval().fit(x, y)(queries)
    baseline = Baseline(backbone, steps=30, lr=0.1).eval().fit(x, y)(queries)
    torch.testing.assert_close(tuned, baseline, rtol=1e-4, atol=1e-5)


def test_finetune_never_changes_the_pretrained_network_and_keeps_frozen_blocks():
    backbone = BACKBONES.create("conv4", in_channels=1, hidden=8)
    pretrained = {k: v.clone() for k, v in backbone.state_dict().items()}
    learner = FineTune(backbone, freeze=2, steps=5, lr=0.5).fit(torch.rand(10, 1, 28, 28), torch.arange(5).repeat(2))
    adapted = learner.adapted_.backbone.state_dict()
    for key, value in pretrained.items():
        assert torch.equal(backbone.state_dict()[key], value), key
        if key.startswith(("blocks.0.", "blocks.1.")):
            assert torch.equal(adapted[key], value), f"{key} of a frozen block moved"
    assert not torch.equal(adapted["blocks.3.0.weight"], pretrained["blocks.3.0.weight"])


@pytest.mark.parametrize("settings, message", [
    ({"freeze": 9}, "freeze=9 but the backbone has 4 blocks"),
    ({"lrs": {"block7": 0.1}}, "unknown block 'block7'"),
    ({"lrs": {"head": -1.0}}, "must be a number >= 0"),
    ({"lr": -0.1}, "lr must be"),
])
def test_finetune_bad_settings_fail_when_built(settings, message):
    with pytest.raises(FewzeroError, match=message):
        FineTune(BACKBONES.create("conv4", in_channels=1, hidden=8), **settings)


@pytest.fixture
def pretrained(tmp_path):
    """A pretrained-backbone checkpoint (untrained weights, a known base mean) as fewzero pretrain writes it."""
    config = load_config(None, "omniglot", overrides={"method": "simpleshot", "backbone_args.hidden": 8})
    backbone = BACKBONES.create("conv4", in_channels=1, hidden=8)
    base_mean = torch.arange(8.0)
    path = save_checkpoint(tmp_path / "pretrained.pt", {"kind": PRETRAINED_KIND, "config": config.to_dict(),
                                                        "in_channels": 1, "model": backbone.state_dict(),
                                                        "statistics": {"base_mean": base_mean}})
    return path, backbone, base_mean


@pytest.mark.parametrize("method", ["baseline", "baselinepp", "simpleshot", "logreg", "finetune"])
def test_every_transfer_learner_starts_from_a_pretrained_checkpoint(pretrained, method):
    path, backbone, base_mean = pretrained
    learner, config, _ = learner_from_checkpoint(path, method=method, learner_settings={"steps": 3}
                                                 if method in ("baseline", "baselinepp", "finetune") else {})
    assert config.method == method
    for key, value in backbone.state_dict().items():
        assert torch.equal(learner.backbone.state_dict()[key], value)
    if method == "simpleshot":
        assert torch.equal(learner.base_mean, base_mean)
    x, y = torch.rand(10, 1, 28, 28), torch.arange(5).repeat(2)
    assert learner.eval().fit(x, y)(x).shape == (10, 5)


def test_a_pretrained_checkpoint_refuses_a_meta_learner_and_another_backbone(pretrained):
    path = pretrained[0]
    with pytest.raises(FewzeroError, match="which protonet does not start from"):
        learner_from_checkpoint(path, method="protonet")
    with pytest.raises(FewzeroError, match="holds a pretrained conv4 backbone, not resnet_small"):
        learner_from_checkpoint(path, method="simpleshot", backbone="resnet_small")
    with pytest.raises(FewzeroError, match="name the learner"):
        learner_from_checkpoint(path)
