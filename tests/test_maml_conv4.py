"""MAML, FOMAML, ANIL, Meta-SGD and Reptile on Conv4 networks: the registered names, batch norm modes, no graph kept
in evaluation, training memory, Finn et al.'s strided Conv4, and a short real run on Omniglot. The meta-gradients
against hand-derived formulas and bad input are in tests/test_maml.py.
"""
from __future__ import annotations

import gc
import tempfile

import pytest
import torch

from fewzero.backbones import Conv4
from fewzero.episode import Episode
from fewzero.learners import ANIL, MAML, MetaSGD, Reptile, fomaml
from fewzero.registry import LEARNERS


def test_registered_names():
    for name in ("maml", "fomaml", "anil", "metasgd", "reptile"):
        learner = LEARNERS.create(name, backbone=Conv4(), n_way=5)
        assert learner.n_way == 5 and learner.inner_lr > 0
    assert LEARNERS.create("fomaml", backbone=Conv4()).first_order
    assert not LEARNERS.create("maml", backbone=Conv4()).first_order


@pytest.mark.parametrize("batch_norm", ["transductive", "inductive"])
def test_batch_norm_modes(batch_norm):
    torch.manual_seed(0)
    learner = MAML(Conv4(hidden=8), feature_dim=8, batch_norm=batch_norm).eval()
    assert not any(True for _ in learner.buffers())  # no running averages: batch (or support) statistics only
    sx, qx = torch.randn(5, 1, 28, 28), torch.randn(10, 1, 28, 28)
    learner.fit(sx, torch.arange(5))
    with torch.no_grad():
        together, alone = learner(qx), learner(qx[:3])
    # inductive: a query's logits do not depend on the other queries; transductive: they do
    assert torch.allclose(together[:3], alone, atol=1e-5) == (batch_norm == "inductive")
    loss, _ = learner.train().episode_loss(Episode(sx, torch.arange(5), qx, torch.arange(5).repeat(2), torch.arange(5)))
    loss.backward()
    grads = [p.grad for p in learner.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("cls", [MAML, fomaml, ANIL, MetaSGD, Reptile])
def test_evaluation_keeps_no_graph(cls):
    def graph_tensors() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.grad_fn is not None)

    learner = cls(Conv4(hidden=8), feature_dim=8).eval()
    before = graph_tensors()
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        learner.fit(torch.randn(5, 1, 28, 28, generator=g), torch.arange(5))
        with torch.no_grad():
            learner(torch.randn(10, 1, 28, 28, generator=g))
        assert all(w.grad_fn is None and not w.requires_grad for w in learner.fast_weights_)
    assert graph_tensors() == before
    learner.train().fit(torch.randn(5, 1, 28, 28), torch.arange(5))  # train mode keeps the graph (sanity check)
    assert graph_tensors() > before


def test_strided_conv4_is_finn_et_als_network_and_keeps_its_layout_through_adaptation():
    from fewzero.backbones import Conv4Strided

    net = Conv4Strided()
    x = torch.randn(6, 1, 28, 28)
    maps = []
    hooks = [block.register_forward_hook(lambda m, i, o: maps.append(tuple(o.shape[2:]))) for block in net.blocks]
    assert net(x).shape == (6, 64)
    assert maps == [(14, 14), (7, 7), (4, 4), (2, 2)]  # stride 2 everywhere, no pooling
    for hook in hooks:
        hook.remove()
    learner = MAML(net, n_way=3, inner_steps=2).train()
    weights, _ = learner.adapt(x, torch.arange(3).repeat(2), differentiable=True)
    assert [w.stride() for w in weights] == [w.stride() for w in learner.meta_weights()]


def _saved_bytes(loss: torch.Tensor) -> int:
    """Bytes of the distinct tensors saved for backward in the graph behind ``loss`` (what training holds on to)."""
    seen_nodes, seen_tensors, total, stack = set(), set(), 0, [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen_nodes:
            continue
        seen_nodes.add(node)
        for name in dir(node):
            if name.startswith("_saved_"):
                value = getattr(node, name, None)
                if isinstance(value, torch.Tensor) and value.untyped_storage().data_ptr() not in seen_tensors:
                    seen_tensors.add(value.untyped_storage().data_ptr())
                    total += value.untyped_storage().nbytes()
        stack.extend(next_node for next_node, _ in node.next_functions)
    return total


def test_training_memory_grows_with_inner_steps_only_for_second_order():
    ep = Episode(torch.randn(5, 1, 28, 28), torch.arange(5), torch.randn(25, 1, 28, 28),
                 torch.arange(5).repeat_interleave(5), torch.arange(5))

    def held(first_order: bool, steps: int) -> int:
        torch.manual_seed(0)
        learner = MAML(Conv4(hidden=8), n_way=5, feature_dim=8, inner_steps=steps, first_order=first_order).train()
        return _saved_bytes(learner.episode_loss(ep)[0])

    first = [held(True, k) for k in (1, 2, 3)]
    second = [held(False, k) for k in (1, 2, 3)]
    assert first[0] == first[1] == first[2]  # first order: the query pass's graph only, whatever the steps
    growth = [second[1] - second[0], second[2] - second[1]]
    assert growth[0] > 0 and abs(growth[1] - growth[0]) <= 0.1 * growth[0]  # second order: linear in the steps
    assert second[0] > first[0]


def test_short_real_run_beats_chance(data_root):
    from fewzero.config import load_config
    from fewzero.train import train

    config = load_config("maml", "omniglot", overrides={
        "episodes": 240, "meta_batch": 2, "lr": 0.003, "train_query": 5, "val_every": 240, "val_episodes": 40,
        "max_minutes": None})
    metrics = train(config, tempfile.mkdtemp(prefix="fewzero-maml-"), data_root=str(data_root), progress=False)
    assert metrics["best_val_accuracy"] > 45.0  # 5-way: chance is 20 %
