"""MAML, FOMAML, ANIL, Meta-SGD and Reptile on tiny linear and MLP networks: meta-gradients against hand-derived
formulas, what each variant adapts, and bad input. On Conv4 (batch norm, memory, a real run): tests/test_maml_conv4.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fewzero.backbones import MLP, Identity
from fewzero.episode import Episode
from fewzero.errors import FewzeroError
from fewzero.learners import ANIL, MAML, MetaSGD, Reptile, fomaml

LR = 0.3


def episode(n_way=3, shot=2, query=4, dim=5, dtype=torch.float64, seed=0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    return Episode(torch.randn(n_way * shot, dim, generator=g, dtype=dtype), torch.arange(n_way).repeat_interleave(shot),
                   torch.randn(n_way * query, dim, generator=g, dtype=dtype),
                   torch.arange(n_way).repeat_interleave(query), torch.arange(n_way))


def linear_maml(first_order=False, steps=1, dim=5, hidden=4, n_way=3) -> MAML:
    learner = MAML(nn.Linear(dim, hidden), n_way=n_way, feature_dim=hidden, inner_lr=LR, inner_steps=steps,
                   first_order=first_order)
    return learner.double()


# -- hand-derived oracle for logits = W (A x + c) + b with mean cross-entropy -------------------------------------
def _gradient(params, x, y):
    a, c, w, b = params
    z = x @ a.T + c
    logits = z @ w.T + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    r = (p - np.eye(w.shape[0])[y]) / len(y)
    d = r @ w
    return [d.T @ x, d.sum(0), r.T @ z, r.sum(0)], (z, p, r)


def _hessian_vector(params, x, y, v):
    """d/dt gradient(params + t v) at t=0, derived by hand (the softmax Jacobian is diag(p) - p p^T)."""
    a, c, w, b = params
    va, vc, vw, vb = v
    _, (z, p, r) = _gradient(params, x, y)
    dz = x @ va.T + vc
    dlogits = dz @ w.T + z @ vw.T + vb
    dr = (p * dlogits - p * (p * dlogits).sum(1, keepdims=True)) / len(y)
    dd = dr @ w + r @ vw
    return [dd.T @ x, dd.sum(0), dr.T @ z + r.T @ dz, dr.sum(0)]


def _oracle_meta_gradient(learner, ep, first_order):
    params = [t.detach().numpy() for t in (learner.backbone.weight, learner.backbone.bias, learner.head.weight,
                                           learner.head.bias)]
    sx, sy, qx, qy = (t.numpy() for t in (ep.support_x, ep.support_y, ep.query_x, ep.query_y))
    g_support, _ = _gradient(params, sx, sy)
    adapted = [p - LR * g for p, g in zip(params, g_support)]
    g_query, _ = _gradient(adapted, qx, qy)
    if first_order:
        return g_query
    return [g - LR * h for g, h in zip(g_query, _hessian_vector(params, sx, sy, g_query))]


def _meta_gradient(learner, ep):
    learner.zero_grad()
    loss, logits = learner.episode_loss(ep)
    loss.backward()
    return [p.grad.numpy().copy() for p in (learner.backbone.weight, learner.backbone.bias, learner.head.weight,
                                            learner.head.bias)]


@pytest.mark.parametrize("first_order", [False, True])
def test_one_step_meta_gradient_matches_closed_form(first_order):
    ep = episode()
    learner = linear_maml(first_order)
    ours = _meta_gradient(learner, ep)
    for got, expected in zip(ours, _oracle_meta_gradient(learner, ep, first_order)):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_adapted_weights_are_one_sgd_step():
    ep = episode()
    learner = linear_maml().eval()
    learner.test_inner_steps = 1
    learner.fit(ep.support_x, ep.support_y)
    params = [t.detach().numpy() for t in learner.meta_weights()]
    g, _ = _gradient(params, ep.support_x.numpy(), ep.support_y.numpy())
    for got, p, gi in zip(learner.fast_weights_, params, g):
        np.testing.assert_allclose(got.numpy(), p - LR * gi, rtol=1e-12, atol=1e-12)


def test_test_inner_lr_applies_in_eval_mode_only():
    ep = episode()
    learner = linear_maml()
    learner.test_inner_lr, learner.test_inner_steps = 0.05, 1
    params = [t.detach().numpy() for t in learner.meta_weights()]
    g, _ = _gradient(params, ep.support_x.numpy(), ep.support_y.numpy())
    for mode, lr in (("eval", 0.05), ("train", LR)):
        getattr(learner, mode)().fit(ep.support_x, ep.support_y)
        for got, p, gi in zip(learner.fast_weights_, params, g):
            np.testing.assert_allclose(got.detach().numpy(), p - lr * gi, rtol=1e-12, atol=1e-12)
    assert "test_inner_lr 0.05 (meta-trained with inner_lr 0.3)" in learner.eval().describe_adaptation()


def test_first_order_drops_exactly_the_second_order_terms():
    """A ReLU unit that is dead on the support set but alive on the queries: the support loss does not depend on
    its weights, so their Hessian rows vanish and first- and second-order meta-gradients agree there, and only
    there."""
    dim, hidden = 5, 4
    ep = episode(dim=dim)
    ep.support_x[:, 0] = -1.0  # unit 0 computes x_0: negative on the support set ...
    ep.query_x[:, 0] = 1.0     # ... positive on the queries
    grads = {}
    for first_order in (False, True):
        torch.manual_seed(1)
        learner = MAML(nn.Sequential(nn.Linear(dim, hidden), nn.ReLU()), n_way=3, feature_dim=hidden, inner_lr=LR,
                       first_order=first_order).double()
        with torch.no_grad():
            learner.backbone[0].weight[0] = torch.eye(dim, dtype=torch.float64)[0]
            learner.backbone[0].bias[0] = 0.0
        learner.episode_loss(ep)[0].backward()
        grads[first_order] = [p.grad.clone() for p in learner.meta_weights()]
    (a2, c2, w2, b2), (a1, c1, w1, b1) = grads[False], grads[True]
    for second, first in ((a2[0], a1[0]), (c2[0], c1[0]), (w2[:, 0], w1[:, 0])):
        assert first.abs().max() > 1e-3  # the query loss does depend on the dead unit
        torch.testing.assert_close(second, first, rtol=0, atol=1e-14)
    for second, first in ((a2[1:], a1[1:]), (c2[1:], c1[1:]), (w2[:, 1:], w1[:, 1:]), (b2, b1)):
        assert (second - first).abs().max() > 1e-4


def test_second_order_gradient_flows_through_several_steps():
    ep = episode()
    second, first = linear_maml(steps=3), linear_maml(first_order=True, steps=3)
    first.load_state_dict(second.state_dict())
    diff = [a - b for a, b in zip(_meta_gradient(second, ep), _meta_gradient(first, ep))]
    assert max(np.abs(d).max() for d in diff) > 1e-4


def test_anil_adapts_only_the_head():
    ep = episode(dtype=torch.float32)
    learner = ANIL(MLP(in_features=5, hidden=8, out_features=6), n_way=3, feature_dim=6, inner_lr=LR, inner_steps=1,
                   test_inner_steps=1).eval()
    body_before = [p.detach().clone() for p in learner.backbone.parameters()]
    learner.fit(ep.support_x, ep.support_y)
    n_body = len(body_before)
    for adapted, before in zip(learner.fast_weights_[:n_body], body_before):
        assert torch.equal(adapted, before)
    # the head took one SGD step on the body's (fixed) support features
    z = learner.backbone(ep.support_x).detach()
    w, b = (t.detach().requires_grad_() for t in (learner.head.weight, learner.head.bias))
    gw, gb = torch.autograd.grad(F.cross_entropy(F.linear(z, w, b), ep.support_y), [w, b])
    torch.testing.assert_close(learner.fast_weights_[-2], w - LR * gw)
    torch.testing.assert_close(learner.fast_weights_[-1], b - LR * gb)
    with torch.no_grad():
        torch.testing.assert_close(learner(ep.query_x), F.linear(learner.backbone(ep.query_x), w - LR * gw, b - LR * gb))
    # meta-training still learns the body (outer loop)
    learner.train().episode_loss(ep)[0].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.backbone.parameters())


@pytest.mark.parametrize("first_order", [False, True])
def test_metasgd_learning_rates_receive_gradients(first_order):
    ep = episode(dtype=torch.float32)
    learner = MetaSGD(MLP(in_features=5, hidden=8, out_features=6), n_way=3, feature_dim=6, inner_lr=0.1,
                      first_order=first_order)
    assert len(learner.inner_lrs) == len(learner.meta_weights())
    learner.episode_loss(ep)[0].backward()
    for lr in learner.inner_lrs:
        assert lr.grad is not None and lr.grad.abs().sum() > 0
    # a zero learning rate freezes that tensor in the inner loop
    with torch.no_grad():
        learner.inner_lrs[-1].zero_()
    learner.eval().fit(ep.support_x, ep.support_y)
    assert torch.equal(learner.fast_weights_[-1], learner.head.bias.detach())
    assert not torch.equal(learner.fast_weights_[-2], learner.head.weight.detach())


def test_reptile_gradient_points_from_adapted_weights():
    ep = episode()
    learner = Reptile(nn.Linear(5, 4), n_way=3, feature_dim=4, inner_lr=LR, inner_steps=3).double()
    loss, logits = learner.episode_loss(ep)
    loss.backward()
    adapted, _ = learner.adapt(ep.support_x, ep.support_y, differentiable=False)
    for p, a in zip(learner.meta_weights(), adapted):
        torch.testing.assert_close(p.grad, p.detach() - a)
    with torch.no_grad():
        torch.testing.assert_close(loss.detach(), F.cross_entropy(learner.logits(ep.query_x, adapted), ep.query_y))


def test_bad_input_is_a_one_line_error():
    ep = episode(dtype=torch.float32)
    mlp = lambda: MLP(in_features=5, hidden=8, out_features=6)  # noqa: E731
    frozen = mlp().requires_grad_(False)
    cases = [
        (lambda: MAML(mlp(), inner_lr=0.0), "inner_lr must be > 0"),
        (lambda: MetaSGD(mlp(), inner_lr=-0.1), "inner_lr must be > 0"),
        (lambda: fomaml(mlp(), test_inner_lr=-0.1), "test_inner_lr must be > 0"),
        (lambda: MAML(mlp(), inner_lr="fast"), "inner_lr must be > 0, got 'fast'"),
        (lambda: MAML(mlp(), inner_steps=-1), "inner_steps must be an integer >= 0"),
        (lambda: Reptile(mlp(), test_inner_steps=-2), "test_inner_steps must be an integer >= 0"),
        (lambda: ANIL(Identity()), "no trainable parameters"),
        (lambda: MAML(frozen), "no trainable parameters"),
        (lambda: MAML(mlp(), batch_norm="running"), "unknown batch_norm"),
        (lambda: MAML(mlp(), n_way=5, feature_dim=6).fit(ep.support_x, ep.support_y), "3 ways but the head has 5"),
        (lambda: MAML(mlp(), n_way=3, feature_dim=64).fit(ep.support_x, ep.support_y), "feature_dim=6"),
        (lambda: MAML(mlp(), n_way=3, feature_dim=6)(ep.query_x), "call fit"),
        (lambda: MAML(mlp(), n_way=3, feature_dim=6, inner_lr=1e30, inner_steps=4).episode_loss(ep),
         r"at inner step [2-4] of 4 \(inner_lr 1e\+30\)"),
        (lambda: MetaSGD(mlp(), n_way=3, feature_dim=6).fit(ep.support_x * float("nan"), ep.support_y),
         "became nan at inner step 1 of 1 .learned inner learning rates"),
    ]
    for make, message in cases:
        with pytest.raises(FewzeroError, match=message) as info:
            make()
        assert "\n" not in str(info.value)
