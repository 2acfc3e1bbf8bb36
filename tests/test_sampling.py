import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fewzero.errors import FewzeroError
from fewzero.sampling import EpisodeSampler


def toy(n_classes=10, per_class=8, dim=3):
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    x = torch.arange(len(labels), dtype=torch.float32).unsqueeze(1).repeat(1, dim)  # item i holds value i
    return TensorDataset(x, labels), labels


def episodes(sampler, dataset):
    return list(DataLoader(dataset, batch_sampler=sampler, collate_fn=sampler.collate))


@pytest.mark.parametrize("way,shot,query", [(5, 1, 3), (3, 2, 6), (10, 4, 4)])
def test_episode_shapes_and_labels(way, shot, query):
    dataset, labels = toy()
    sampler = EpisodeSampler(labels, way, shot, query, n_episodes=20, seed=3)
    for ep in episodes(sampler, dataset):
        assert ep.support_x.shape == (way * shot, 3) and ep.query_x.shape == (way * query, 3)
        assert ep.support_y.tolist() == [c for c in range(way) for _ in range(shot)]
        assert ep.query_y.tolist() == [c for c in range(way) for _ in range(query)]
        assert len(set(ep.class_ids.tolist())) == way
        support_items = set(ep.support_x[:, 0].long().tolist())
        query_items = set(ep.query_x[:, 0].long().tolist())
        assert not support_items & query_items, "support and query overlap"
        assert len(support_items) == way * shot and len(query_items) == way * query
        # every item belongs to the class its local label names
        for x, y in ((ep.support_x, ep.support_y), (ep.query_x, ep.query_y)):
            assert torch.equal(labels[x[:, 0].long()], ep.class_ids[y])


def test_same_seed_same_episodes_other_seed_different():
    dataset, labels = toy()
    a = [EpisodeSampler(labels, 5, 1, 2, 10, seed=7).episode_indices(i) for i in range(10)]
    b = list(EpisodeSampler(labels, 5, 1, 2, 10, seed=7))
    c = list(EpisodeSampler(labels, 5, 1, 2, 10, seed=8))
    assert a == b
    assert a != c


def test_resume_start_continues_the_same_sequence():
    _, labels = toy()
    full = list(EpisodeSampler(labels, 4, 1, 1, 12, seed=1))
    tail = list(EpisodeSampler(labels, 4, 1, 1, 12, seed=1, start=5))
    assert tail == full[5:] and len(EpisodeSampler(labels, 4, 1, 1, 12, seed=1, start=5)) == 7


def test_episodes_do_not_depend_on_consumer(omniglot_test):
    """Test episodes are a function of (split, ways, shots, queries, seed) only: two evaluations of different
    learners see the same classes in the same order."""
    from fewzero.backbones import Conv4, Identity
    from fewzero.evaluate import evaluate
    from fewzero.learners import ProtoNet

    sampler = EpisodeSampler(omniglot_test.labels, 5, 1, 5, 30, seed=0)
    r1 = evaluate(ProtoNet(Identity()), omniglot_test, sampler, progress=False)
    r2 = evaluate(ProtoNet(Conv4(), distance="cosine"), omniglot_test, sampler, progress=False)
    assert [r["class_ids"] for r in r1.records] == [r["class_ids"] for r in r2.records]


def test_class_too_small_is_named():
    labels = np.array([0] * 5 + [1] * 2 + [2] * 5)
    with pytest.raises(FewzeroError, match="cat has 2 items but n_shot \\+ n_query = 4"):
        EpisodeSampler(labels, 2, 1, 3, 5, class_names=["dog", "cat", "cow"])


def test_more_ways_than_classes():
    with pytest.raises(FewzeroError, match="n_way=4 is larger than the 3 classes"):
        EpisodeSampler(np.repeat(np.arange(3), 5), 4, 1, 1, 5)


@pytest.mark.parametrize("kwargs", [dict(n_way=0), dict(n_shot=0), dict(n_query=-1), dict(n_way=2.5)])
def test_bad_counts(kwargs):
    args = dict(n_way=2, n_shot=1, n_query=1, n_episodes=3) | kwargs
    with pytest.raises(FewzeroError):
        EpisodeSampler(np.repeat(np.arange(3), 5), **args)
