"""The same tests for every registered few-shot learner (shapes, finiteness, seeds, labels, training, evaluator)."""
import pytest
import torch

from fewzero.checkpoint import build_learner
from fewzero.config import load_config
from fewzero.episode import Episode
from fewzero.errors import FewzeroError
from fewzero.evaluate import evaluate
from fewzero.registry import LEARNERS
from fewzero.sampling import EpisodeSampler

METHODS = LEARNERS.available()


# the ensemble needs members: two tiny learners of different kinds, built on copies of the config's backbone;
# fine-tuning's contract holds at any step count: 10 of its 100 default steps (which cost 5 s in float64)
OVERRIDES = {"ensemble": {"learner.members": [{"method": "protonet"}, {"method": "matching"}]},
             "finetune": {"learner.steps": 10}}


def make_learner(method: str, seed: int = 0):
    config = load_config(method, "omniglot", overrides=OVERRIDES.get(method))
    torch.manual_seed(seed)
    return build_learner(config), config.test_way


def make_episode(way: int, shot: int = 2, query: int = 3, seed: int = 0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(way, 1, 28, 28, generator=g)
    support = prototypes.repeat_interleave(shot, 0) + 0.1 * torch.rand(way * shot, 1, 28, 28, generator=g)
    query_x = prototypes.repeat_interleave(query, 0) + 0.1 * torch.rand(way * query, 1, 28, 28, generator=g)
    return Episode(support, torch.arange(way).repeat_interleave(shot), query_x,
                   torch.arange(way).repeat_interleave(query), torch.arange(way))


def test_registry_is_not_empty():
    assert "protonet" in METHODS


@pytest.mark.parametrize("method", METHODS)
def test_fit_then_forward_shapes(method):
    learner, way = make_learner(method)
    ep = make_episode(way)
    learner.eval()
    assert learner.fit(ep.support_x, ep.support_y) is learner
    with torch.no_grad():
        logits = learner(ep.query_x)
    assert logits.shape == (ep.query_y.numel(), way) and torch.isfinite(logits).all()


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_logits(method):
    ep = make_episode(make_learner(method)[1])
    outs = []
    for _ in range(2):
        learner, _ = make_learner(method, seed=3)
        learner.eval()
        outs.append(learner.fit(ep.support_x, ep.support_y)(ep.query_x).detach())
    torch.testing.assert_close(outs[0], outs[1])


@pytest.mark.parametrize("method", METHODS)
def test_label_permutation(method):
    learner, way = make_learner(method)
    invariant = getattr(learner, "label_permutation_invariant", True)
    ep = make_episode(way)
    # float64: learners that optimise on the support set (fine-tuning, logistic regression) amplify float32
    # rounding over their steps; in float64 a relabelling gives the same numbers up to rounding (and, for
    # scikit-learn's L-BFGS, up to its stopping tolerance: atol is relative to the size of the logits)
    learner.double().eval()
    support_x, query_x = ep.support_x.double(), ep.query_x.double()
    logits = learner.fit(support_x, ep.support_y)(query_x).detach().double()
    perm = torch.randperm(way)
    perm = perm.roll(1) if torch.equal(perm, torch.arange(way)) else perm  # a relabelling that moves labels
    permuted = learner.fit(support_x, perm[ep.support_y])(query_x).detach().double()
    tolerance = {"rtol": 1e-6, "atol": 1e-3 * float(logits.abs().max()) + 1e-9}
    if invariant:
        torch.testing.assert_close(permuted[:, perm], logits, **tolerance)
    else:  # the declaration must be true: row i of its (meta-learned) head belongs to label i
        assert not torch.allclose(permuted[:, perm], logits, **tolerance), \
            f"{method} declares label_permutation_invariant = False, but relabelling only permuted its scores"


@pytest.mark.parametrize("method", METHODS)
def test_episode_loss_trains(method):
    learner, way = make_learner(method)
    learner.train()
    if not getattr(learner, "meta_trainable", True):  # it must say so, and say what to do instead
        with pytest.raises(FewzeroError, match="fewzero pretrain"):
            learner.episode_loss(make_episode(way))
        return
    loss, logits = learner.episode_loss(make_episode(way))
    assert loss.ndim == 0 and torch.isfinite(loss) and logits.shape[1] == way
    loss.backward()
    grads = [p.grad for p in learner.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)


@pytest.mark.parametrize("method", METHODS)
def test_shared_evaluator_runs(method):
    learner, way = make_learner(method)
    items = torch.rand(way * 6, 1, 28, 28)
    labels = torch.arange(way).repeat_interleave(6)
    dataset = torch.utils.data.TensorDataset(items, labels)
    dataset.labels = labels
    report = evaluate(learner, dataset, EpisodeSampler(labels, way, 1, 2, 3, seed=0), progress=False)
    assert report.n_episodes == 3 and 0 <= report.accuracy <= 100
