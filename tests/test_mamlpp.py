"""MAML++ (``mamlpp``): each switch against its definition, and all switches off equal to MAML."""
from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fewzero.backbones import Conv4Strided
from fewzero.errors import FewzeroError
from fewzero.learners import MAML, MAMLpp
from fewzero.learners.mamlpp import step_loss_weights
from fewzero.train import lr_schedule
from test_vmap import episodes

OFF = dict(multi_step_loss=False, per_step_bn_weights=False, per_step_bn_statistics=False, learned_inner_lr=False,
           derivative_order_annealing=False)


def build(cls=MAMLpp, steps: int = 2, **settings):
    torch.manual_seed(0)
    return cls(Conv4Strided(hidden=6), n_way=3, feature_dim=6, inner_lr=0.3, inner_steps=steps,
               **settings).double().train()


def gradients(model, tasks, progress: float | None = None) -> dict[str, torch.Tensor]:
    if progress is not None:
        model.set_training_progress(progress)
    model.zero_grad(set_to_none=True)
    losses, _ = model.meta_batch_loss(tasks)
    losses.mean().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("first_order", [False, True])
def test_every_switch_off_is_maml(first_order):
    tasks = episodes(2)
    ours = gradients(build(first_order=first_order, **OFF), tasks, progress=0.0)
    maml = gradients(build(MAML, first_order=first_order), tasks)
    assert ours.keys() == maml.keys()
    for name in maml:
        torch.testing.assert_close(ours[name], maml[name], rtol=1e-10, atol=1e-12, msg=name)


def test_learned_inner_rates_get_gradients_and_change_adaptation():
    model = build(**{**OFF, "learned_inner_lr": True})
    grads = gradients(model, episodes(2))
    assert grads["step_lrs"].shape == (len(model.meta_weights()), 2) and bool((grads["step_lrs"] != 0).all())
    ep = episodes(1)[0]
    model.eval()
    before = model.fit(ep.support_x, ep.support_y)(ep.query_x).detach()
    with torch.no_grad():
        model.step_lrs[:, -1] *= 2  # eval steps past the trained count reuse the last step's rates
    assert not torch.allclose(model.fit(ep.support_x, ep.support_y)(ep.query_x), before)


def test_per_step_statistics_one_set_per_step_and_queries_scored_alone():
    model = build(**{**OFF, "per_step_bn_statistics": True}, test_bn_statistics="running")
    gradients(model, episodes(3))
    means = {name: b for name, b in model.named_buffers() if name.startswith("step_mean__")}
    assert len(means) == 4 and all(b.shape == (3, 6) for b in means.values())  # after 0, 1, 2 updates
    for b in means.values():  # every set collected statistics, and not the same ones
        assert bool((b != 0).any(dim=1).all()) and not torch.allclose(b[0], b[1]) and not torch.allclose(b[1], b[2])
    ep = episodes(1)[0]
    model.eval().fit(ep.support_x, ep.support_y)
    together = model(ep.query_x)
    alone = torch.cat([model(ep.query_x[i:i + 1]) for i in range(len(ep.query_x))])
    torch.testing.assert_close(alone, together)  # running statistics: no query depends on another


def test_per_step_bn_weights_replace_the_layers_own():
    model = build(**{**OFF, "per_step_bn_weights": True})
    grads = gradients(model, episodes(2))
    assert all(grads[f"step_bn_{p}.blocks__{i}__1"].shape == (3, 6) for p in ("weight", "bias") for i in range(4))
    assert not any(re.fullmatch(r"backbone\.blocks\.\d\.1\.(weight|bias)", name) for name in grads)  # per step only
    assert any(re.fullmatch(r"backbone\.blocks\.\d\.0\.weight", name) for name in grads)
    assert all(bool(grads[f"step_bn_weight.blocks__{i}__1"][k].abs().sum() > 0) for i in range(4) for k in (0, 1, 2))


@settings(max_examples=40, deadline=None)
@given(steps=st.integers(1, 8), progress=st.floats(0, 1), fraction=st.floats(0.01, 1))
def test_multi_step_loss_weights(steps, progress, fraction):
    weights = step_loss_weights(steps, progress, fraction)
    assert len(weights) == steps and sum(weights) == pytest.approx(1.0)
    assert all(w >= 0 for w in weights) and weights[-1] == max(weights)
    if progress >= fraction:
        assert weights == [0.0] * (steps - 1) + [1.0]
    if progress == 0:
        assert weights == pytest.approx([1 / steps] * steps)


def test_multi_step_loss_counts_every_step_early_and_the_last_late():
    ep = episodes(1)[0]
    model = build(steps=3, **{**OFF, "multi_step_loss": True})
    plain = build(steps=3, **OFF)
    model.set_training_progress(0.0)
    loss, _ = model.episode_loss(ep)
    per_step = [torch.nn.functional.cross_entropy(plain.logits(ep.query_x, plain.meta_weights()), ep.query_y)]
    weights = plain.meta_weights()
    for step in range(3):
        weights = plain.inner_step(weights, ep.support_x, ep.support_y, step, True)
        per_step.append(torch.nn.functional.cross_entropy(plain.logits(ep.query_x, weights), ep.query_y))
    torch.testing.assert_close(loss, sum(per_step[1:]) / 3)
    model.set_training_progress(0.5)
    torch.testing.assert_close(model.episode_loss(ep)[0], per_step[-1])


def test_derivative_order_annealing_is_first_order_then_second():
    tasks = episodes(2)
    annealed = build(**{**OFF, "derivative_order_annealing": True}, first_order_fraction=0.4)
    first = gradients(build(**OFF, first_order=True), tasks)
    second = gradients(build(**OFF), tasks)
    early, late = gradients(annealed, tasks, 0.2), gradients(annealed, tasks, 0.6)
    for name in first:
        torch.testing.assert_close(early[name], first[name], msg=name)
        torch.testing.assert_close(late[name], second[name], msg=name)
    assert any(not torch.allclose(first[n], second[n]) for n in first)


def test_head_rows_follow_the_labels():
    """Relabelling the support set and permuting the meta-learned head rows alike permutes the logits."""
    model = build().eval()
    ep = episodes(1)[0]
    logits = model.fit(ep.support_x, ep.support_y)(ep.query_x).detach()
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        inverse = torch.argsort(perm)
        model.head.weight.copy_(model.head.weight[inverse])
        model.head.bias.copy_(model.head.bias[inverse])
    permuted = model.fit(ep.support_x, perm[ep.support_y])(ep.query_x).detach()
    torch.testing.assert_close(permuted[:, perm], logits)


def test_cosine_schedule_reaches_lr_min():
    from fewzero.config import load_config

    config = load_config("mamlpp", "omniglot", overrides={"lr_schedule": "cosine", "lr": 1e-3, "lr_min": 1e-5,
                                                          "episodes": 40, "meta_batch": 4, "val_every": 20})
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
    schedule = lr_schedule(optimizer, config)
    rates = []
    for _ in range(10):
        optimizer.step()
        schedule.step()
        rates.append(schedule.get_last_lr()[0])
    assert rates[-1] == pytest.approx(1e-5) and all(a > b for a, b in zip(rates, rates[1:]))


def test_bad_settings_are_one_line_errors():
    for settings_, match in (({"msl_fraction": 2.0}, "msl_fraction must be in"),
                             ({"batch_norm": "inductive"}, "drop learner.batch_norm"),
                             ({"per_step_bn_statistics": False, "test_bn_statistics": "running"},
                              "set learner.test_bn_statistics"),
                             ({"steps": 0}, "inner_steps >= 1")):
        with pytest.raises(FewzeroError, match=match):
            build(**settings_)
    with pytest.raises(FewzeroError, match="no batch-norm layers"):
        MAMLpp(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 6)), n_way=3, feature_dim=6)
