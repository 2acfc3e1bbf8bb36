import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestCentroid

from fewzero.backbones import Identity
from fewzero.errors import FewzeroError
from fewzero.learners import ProtoNet


@pytest.mark.parametrize("seed", range(5))
def test_identity_protonet_agrees_with_nearest_centroid(seed):
    rng = np.random.default_rng(seed)
    way, shot, dim = 6, 4, 10
    centers = rng.normal(size=(way, dim)) * 2
    sx = (centers.repeat(shot, 0) + rng.normal(size=(way * shot, dim))).astype(np.float32)
    sy = np.arange(way).repeat(shot)
    qx = (centers.repeat(7, 0) + rng.normal(size=(way * 7, dim)) * 1.5).astype(np.float32)
    oracle = NearestCentroid().fit(sx, sy)
    learner = ProtoNet(Identity()).fit(torch.from_numpy(sx), torch.from_numpy(sy))
    np.testing.assert_allclose(learner.prototypes_.numpy(), oracle.centroids_, rtol=1e-5, atol=1e-6)
    logits = learner(torch.from_numpy(qx))
    assert logits.shape == (way * 7, way)
    assert (logits.argmax(1).numpy() == oracle.predict(qx)).all()
    # logits are minus squared distances
    d2 = ((qx[:, None, :] - oracle.centroids_[None]) ** 2).sum(-1)
    np.testing.assert_allclose(logits.numpy(), -d2, rtol=1e-4, atol=1e-3)


def test_cosine_distance():
    sx = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    learner = ProtoNet(Identity(), distance="cosine", scale=10.0).fit(sx, torch.tensor([0, 1]))
    logits = learner(torch.tensor([[3.0, 0.0], [1.0, 1.0]]))
    torch.testing.assert_close(logits, torch.tensor([[10.0, 0.0], [10 / 2**0.5, 10 / 2**0.5]]))


def test_bad_use():
    with pytest.raises(FewzeroError, match="unknown distance"):
        ProtoNet(Identity(), distance="manhattan")
    with pytest.raises(FewzeroError, match="call fit"):
        ProtoNet(Identity())(torch.zeros(2, 3))
    with pytest.raises(FewzeroError, match="0..n_way-1"):
        ProtoNet(Identity()).fit(torch.zeros(2, 3), torch.tensor([0, 2]))
