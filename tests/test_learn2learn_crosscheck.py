"""Cross-check against learn2learn: from the same weights and tasks, one outer step of our MAML and of
``learn2learn.algorithms.MAML`` give the same gradients and parameters.

learn2learn is optional (``bash scripts/install_learn2learn.sh .venv``). Without it these tests skip, unless
``FEWZERO_REQUIRE_L2L=1`` (CI sets it), in which case they fail.
"""
from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fewzero.backbones import Conv4
from fewzero.episode import Episode
from fewzero.learners import MAML


@pytest.fixture(scope="module")
def l2l():
    try:
        import learn2learn
    except ImportError:
        if os.environ.get("FEWZERO_REQUIRE_L2L") == "1":
            pytest.fail("FEWZERO_REQUIRE_L2L=1 but learn2learn is not installed: run "
                        "bash scripts/install_learn2learn.sh .venv")
        pytest.skip("learn2learn is not installed (bash scripts/install_learn2learn.sh .venv)")
    return learn2learn


def tasks(n_tasks=2, way=5, shot=1, query=3):
    g = torch.Generator().manual_seed(0)
    return [Episode(torch.randn(way * shot, 1, 28, 28, generator=g, dtype=torch.float64),
                    torch.arange(way).repeat_interleave(shot),
                    torch.randn(way * query, 1, 28, 28, generator=g, dtype=torch.float64),
                    torch.arange(way).repeat_interleave(query), torch.arange(way)) for _ in range(n_tasks)]


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [1, 3])
def test_one_outer_step_matches_learn2learn(l2l, first_order, steps):
    torch.manual_seed(0)
    ours = MAML(Conv4(hidden=16), n_way=5, feature_dim=16, inner_lr=0.4, inner_steps=steps,
                first_order=first_order).double()
    # learn2learn wraps a standard Conv4 (running statistics and all, in train mode) with the same weights
    backbone = Conv4(hidden=16).double()
    missing, unexpected = backbone.load_state_dict(ours.backbone.state_dict(), strict=False)
    assert not unexpected and all("running" in k or "num_batches" in k for k in missing)
    head = nn.Linear(16, 5).double()
    head.load_state_dict(ours.head.state_dict())
    theirs = l2l.algorithms.MAML(nn.Sequential(backbone, head), lr=0.4, first_order=first_order)
    optimizers = [torch.optim.SGD(ours.parameters(), lr=0.1), torch.optim.SGD(theirs.parameters(), lr=0.1)]
    episodes = tasks()

    for episode in episodes:
        (ours.episode_loss(episode)[0] / len(episodes)).backward()
        clone = theirs.clone()
        for _ in range(steps):
            clone.adapt(F.cross_entropy(clone(episode.support_x), episode.support_y))
        (F.cross_entropy(clone(episode.query_x), episode.query_y) / len(episodes)).backward()

    pairs = list(zip(ours.parameters(), theirs.parameters(), strict=True))
    for a, b in pairs:
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-11)
    for optimizer in optimizers:
        optimizer.step()
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
