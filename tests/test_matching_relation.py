"""Matching Networks and Relation Networks: numpy oracles, the papers' equations, equivariance, bf16, training."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from fewzero.backbones import Identity
from fewzero.backbones.conv4 import Conv4
from fewzero.episode import Episode
from fewzero.errors import FewzeroError
from fewzero.evaluate import evaluate
from fewzero.learners.matching import MatchingNetwork
from fewzero.learners.relation import RelationNetwork
from fewzero.sampling import EpisodeSampler

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def relation_net(**kwargs) -> RelationNetwork:
    return RelationNetwork(Conv4(hidden=16, pooled_blocks=2, flatten=False), feature_channels=16, **kwargs)


def image_episode(way=4, shot=2, query=3, seed=0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(way, 1, 28, 28, generator=g)
    sx = protos.repeat_interleave(shot, 0) + 0.3 * torch.rand(way * shot, 1, 28, 28, generator=g)
    qx = protos.repeat_interleave(query, 0) + 0.3 * torch.rand(way * query, 1, 28, 28, generator=g)
    return Episode(sx, torch.arange(way).repeat_interleave(shot), qx, torch.arange(way).repeat_interleave(query),
                   torch.arange(way))


# --- Matching Networks ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed,scale", [(0, 1.0), (1, 1.0), (2, 7.5)])
def test_matching_equals_numpy_cosine_attention(seed, scale):
    rng = np.random.default_rng(seed)
    way, shot, n_query, dim = 5, 3, 11, 8
    sx = rng.normal(size=(way * shot, dim)).astype(np.float32)
    sy = rng.permutation(np.arange(way).repeat(shot))  # support not grouped by class
    qx = rng.normal(size=(n_query, dim)).astype(np.float32)
    cos = (qx / np.linalg.norm(qx, axis=1, keepdims=True)) @ (sx / np.linalg.norm(sx, axis=1, keepdims=True)).T
    attention = np.exp(scale * cos) / np.exp(scale * cos).sum(1, keepdims=True)
    expected = np.log(attention @ np.eye(way)[sy])
    learner = MatchingNetwork(Identity(), scale=scale).fit(torch.from_numpy(sx), torch.from_numpy(sy))
    logits = learner(torch.from_numpy(qx))
    np.testing.assert_allclose(logits.detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.logsumexp(logits, 1), torch.zeros(n_query), atol=1e-5, rtol=0)


def test_matching_log_probabilities_stay_finite_when_attention_is_sharp():
    sx, sy = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    learner = MatchingNetwork(Identity(), scale=1000.0).fit(sx, sy)
    query = torch.tensor([[1.0, 0.0]], requires_grad=True)
    logits = learner(query)
    assert torch.isfinite(logits).all() and logits[0, 1] < -900  # log P = -1000, no log 0
    F.cross_entropy(logits, torch.tensor([1])).backward()
    assert torch.isfinite(query.grad).all()


def lstm_cell(x, h, c, w_ih, w_hh, b):
    """numpy LSTM cell in PyTorch's gate order (input, forget, cell, output)."""
    i, f, g, o = np.split(x @ w_ih.T + h @ w_hh.T + b, 4, axis=-1)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    c = sig(f) * c + sig(i) * np.tanh(g)
    return sig(o) * np.tanh(c), c


def test_matching_fce_follows_the_papers_appendix():
    torch.manual_seed(0)
    way, shot, n_query, dim, steps = 3, 2, 4, 6, 3
    learner = MatchingNetwork(Identity(), fce=True, feature_dim=dim, lstm_steps=steps)
    sx, qx = torch.randn(way * shot, dim), torch.randn(n_query, dim)
    sy = torch.tensor([2, 0, 1, 0, 2, 1])
    logits = learner.fit(sx, sy)(qx).detach().numpy()
    p = {k: v.detach().numpy() for k, v in learner.state_dict().items()}
    s, q = sx.numpy(), qx.numpy()
    # g(x_i, S) = h_fwd_i + h_bwd_i + g'(x_i): a bidirectional LSTM over the support sequence
    fwd, bwd, h, c = [], [], np.zeros(dim), np.zeros(dim)
    for x in s:
        h, c = lstm_cell(x, h, c, p["support_lstm.weight_ih_l0"], p["support_lstm.weight_hh_l0"],
                         p["support_lstm.bias_ih_l0"] + p["support_lstm.bias_hh_l0"])
        fwd.append(h)
    h, c = np.zeros(dim), np.zeros(dim)
    for x in s[::-1]:
        h, c = lstm_cell(x, h, c, p["support_lstm.weight_ih_l0_reverse"], p["support_lstm.weight_hh_l0_reverse"],
                         p["support_lstm.bias_ih_l0_reverse"] + p["support_lstm.bias_hh_l0_reverse"])
        bwd.append(h)
    g = np.stack(fwd) + np.stack(bwd[::-1]) + s
    # f(x, S): K steps of h_k = LSTM(f'(x), [h_{k-1}, r_{k-1}]) + f'(x), r = softmax(h g^T) g
    h, c = np.zeros((n_query, dim)), np.zeros((n_query, dim))
    w_ih = p["query_lstm.weight_ih"]
    for _ in range(steps):
        a = np.exp(h @ g.T) / np.exp(h @ g.T).sum(1, keepdims=True)
        r = a @ g
        h_hat, c = lstm_cell(q, np.concatenate([h, r], 1), c, w_ih[:, :dim],
                             np.concatenate([p["query_lstm.weight_hh"], w_ih[:, dim:]], 1),
                             p["query_lstm.bias_ih"] + p["query_lstm.bias_hh"])
        h = h_hat + q
    cos = (h / np.linalg.norm(h, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
    attention = np.exp(cos) / np.exp(cos).sum(1, keepdims=True)
    np.testing.assert_allclose(logits, np.log(attention @ np.eye(way)[sy.numpy()]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fce", [False, True])
@pytest.mark.parametrize("train_mode", [False, True])
def test_matching_relabelling_permutes_columns(fce, train_mode):
    torch.manual_seed(1)
    learner = MatchingNetwork(Conv4(hidden=16), fce=fce, feature_dim=16).train(train_mode)
    ep = image_episode()
    perm = torch.tensor([2, 0, 3, 1])
    logits = learner.fit(ep.support_x, ep.support_y)(ep.query_x).detach()
    permuted = learner.fit(ep.support_x, perm[ep.support_y])(ep.query_x).detach()
    torch.testing.assert_close(permuted[:, perm], logits, rtol=1e-5, atol=1e-5)


# --- Relation Networks ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_relation_class_maps_pool_the_support_maps(pooling):
    learner = relation_net(pooling=pooling).eval()
    ep = image_episode(way=3, shot=4)
    with torch.no_grad():
        maps = learner.backbone(ep.support_x)
        learner.fit(ep.support_x, ep.support_y)
    expected = maps.view(3, 4, 16, 7, 7).sum(1) / (4 if pooling == "mean" else 1)
    torch.testing.assert_close(learner.class_maps_, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("train_mode", [False, True])
def test_relation_scores_every_concatenated_pair(train_mode):
    learner = relation_net().train(train_mode)
    ep = image_episode(way=4, shot=2, query=3)
    z = learner.backbone(torch.cat([ep.support_x, ep.query_x]))
    learner.fit_embeddings(z[:8], ep.support_y)
    scores = learner.score_embeddings(z[8:])
    assert scores.shape == (12, 4) and ((scores > 0) & (scores < 1)).all()
    # the textbook module: concat(class map, query map) -> conv blocks -> FC -> FC, on all pairs at once
    classes, queries = learner.class_maps_, z[8:]
    pairs = torch.cat([classes.unsqueeze(0).expand(12, -1, -1, -1, -1),
                       queries.unsqueeze(1).expand(-1, 4, -1, -1, -1)], dim=2).flatten(0, 1)
    expected = torch.sigmoid(learner.relation_of_pairs(pairs)).view(12, 4)
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pooling", ["sum", "mean"])
@pytest.mark.parametrize("train_mode", [False, True])
def test_relation_relabelling_permutes_columns(pooling, train_mode):
    learner = relation_net(pooling=pooling).train(train_mode)
    ep = image_episode()
    perm = torch.tensor([3, 0, 2, 1])
    scores = learner.fit(ep.support_x, ep.support_y)(ep.query_x).detach()
    permuted = learner.fit(ep.support_x, perm[ep.support_y])(ep.query_x).detach()
    torch.testing.assert_close(permuted[:, perm], scores, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_relation_episode_loss(loss):
    learner = relation_net(loss=loss).eval()
    ep = image_episode()
    value, scores = learner.episode_loss(ep)
    expected_scores = learner.fit(ep.support_x, ep.support_y)(ep.query_x)
    torch.testing.assert_close(scores, expected_scores)
    if loss == "mse":
        expected = ((scores - F.one_hot(ep.query_y, 4).float()) ** 2).mean()
    else:
        expected = F.cross_entropy(torch.logit(scores.double()), ep.query_y).float()
    torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-5)


# --- both: bf16, the evaluator's embedding cache, bad input, training -----------------------------------------------

LEARNERS = {"matching": lambda: MatchingNetwork(Conv4(hidden=16), scale=20.0),  # the config's scale
            "matching_fce": lambda: MatchingNetwork(Conv4(hidden=16), fce=True, feature_dim=16, scale=20.0),
            "relation": relation_net}


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_bf16_autocast_gives_fp32_loss_and_finite_gradients(name):
    torch.manual_seed(0)
    learner, ep = LEARNERS[name](), image_episode()
    reference, _ = learner.episode_loss(ep)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logits = learner.episode_loss(ep)
    assert loss.dtype == logits.dtype == torch.float32
    torch.testing.assert_close(loss, reference, rtol=0.05, atol=0.01)
    loss.backward()
    grads = [p.grad for p in learner.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_evaluator_embedding_cache_matches_per_episode_embedding(name):
    torch.manual_seed(0)
    learner = LEARNERS[name]()
    labels = torch.arange(5).repeat_interleave(6)
    dataset = torch.utils.data.TensorDataset(torch.rand(30, 1, 28, 28) + labels.view(-1, 1, 1, 1) / 5, labels)
    dataset.labels = labels
    reports = [evaluate(learner, dataset, EpisodeSampler(labels, 5, 2, 3, 4, seed=0), progress=False,
                        reuse_embeddings=reuse) for reuse in (True, False)]
    assert [r["accuracy"] for r in reports[0].records] == [r["accuracy"] for r in reports[1].records]


def test_bad_input_says_what_to_do():
    with pytest.raises(FewzeroError, match="pooled_blocks: 2, flatten: false"):
        RelationNetwork(Conv4()).fit(torch.rand(2, 1, 28, 28), torch.tensor([0, 1]))
    with pytest.raises(FewzeroError, match="learner.feature_dim to 16"):
        MatchingNetwork(Conv4(hidden=16), fce=True).fit(torch.rand(2, 1, 28, 28), torch.tensor([0, 1]))
    with pytest.raises(FewzeroError, match="flat support embeddings"):
        MatchingNetwork(Conv4(pooled_blocks=2, flatten=False)).fit(torch.rand(2, 1, 28, 28), torch.tensor([0, 1]))
    for make in (lambda: RelationNetwork(Identity(), loss="l1"), lambda: RelationNetwork(Identity(), pooling="max"),
                 lambda: MatchingNetwork(Identity(), lstm_steps=0), lambda: MatchingNetwork(Identity(), scale=0.0)):
        with pytest.raises(FewzeroError, match="choose one of|must be"):
            make()
    for learner in (MatchingNetwork(Identity()), relation_net()):
        with pytest.raises(FewzeroError, match="call fit"):
            learner(torch.rand(2, 1, 28, 28))
        with pytest.raises(FewzeroError, match="0..n_way-1"):
            learner.fit(torch.rand(2, 1, 28, 28), torch.tensor([0, 2]))


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_short_training_lowers_the_loss_on_new_classes(name):
    torch.manual_seed(0)
    learner = LEARNERS[name]()
    optimizer = torch.optim.Adam(learner.parameters(), lr=3e-3)
    held_out = [image_episode(way=4, shot=1, query=4, seed=1000 + i) for i in range(4)]

    def held_out_loss() -> float:
        learner.eval()
        with torch.no_grad():
            return float(sum(learner.episode_loss(ep)[0] for ep in held_out)) / len(held_out)

    before = held_out_loss()
    learner.train()
    for step in range(60):
        loss, _ = learner.episode_loss(image_episode(way=4, shot=1, query=4, seed=step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert held_out_loss() < 0.5 * before  # seen 0.23-0.39x with these seeds
