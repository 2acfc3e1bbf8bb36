"""vmapped meta-batches (``learner.vmap=True``) give the loop's meta-gradients, for every MAML-family learner."""
from __future__ import annotations

import pytest
import torch

from fewzero.backbones import Conv4Strided
from fewzero.episode import Episode
from fewzero.errors import FewzeroError
from fewzero.registry import LEARNERS

VMAPPED = ("maml", "fomaml", "anil", "metasgd", "mamlpp")
# MAML++'s per-step running statistics fall back to the loop; derivative-order annealing off keeps second order
EXTRA = {"mamlpp": {"per_step_bn_statistics": False, "derivative_order_annealing": False}}
WAY, SHOT, QUERY = 3, 2, 2


def episodes(n: int, seed: int = 0, shot: int = SHOT) -> list[Episode]:
    g = torch.Generator().manual_seed(seed)
    labels = lambda k: torch.arange(WAY).repeat_interleave(k)  # noqa: E731
    return [Episode(torch.randn(WAY * shot, 1, 10, 10, generator=g, dtype=torch.float64), labels(shot),
                    torch.randn(WAY * QUERY, 1, 10, 10, generator=g, dtype=torch.float64), labels(QUERY),
                    torch.arange(WAY)) for _ in range(n)]


def learner(name: str, vmap: bool, **settings):
    torch.manual_seed(0)
    return LEARNERS.create(name, backbone=Conv4Strided(hidden=6), n_way=WAY, feature_dim=6, inner_lr=0.3,
                           inner_steps=2, vmap=vmap, **{**EXTRA.get(name, {}), **settings}).double().train()


def meta_gradients(model, tasks) -> tuple[list[torch.Tensor], torch.Tensor]:
    model.zero_grad(set_to_none=True)
    losses, logits = model.meta_batch_loss(tasks)
    losses.mean().backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None], logits


CASES = [(name, first_order) for name in VMAPPED for first_order in (False, True)
         if not (name == "fomaml" and not first_order)]  # fomaml is first order by definition


@pytest.mark.parametrize("name,first_order", CASES)
def test_vmapped_meta_gradients_equal_the_loop(name, first_order):
    settings = {} if name == "fomaml" else {"first_order": first_order}
    tasks = episodes(3)
    loop_grads, loop_logits = meta_gradients(learner(name, False, **settings), tasks)
    vmap_grads, vmap_logits = meta_gradients(learner(name, True, **settings), tasks)
    assert len(loop_grads) == len(vmap_grads) > 0
    torch.testing.assert_close(vmap_logits, loop_logits, rtol=1e-9, atol=1e-10)
    for a, b in zip(vmap_grads, loop_grads):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_second_order_terms_are_there():
    """The vmapped second-order gradient differs from the first-order one: the comparison above can fail."""
    tasks = episodes(2)
    second, _ = meta_gradients(learner("maml", True), tasks)
    first, _ = meta_gradients(learner("maml", True, first_order=True), tasks)
    assert max((a - b).abs().max().item() for a, b in zip(second, first)) > 1e-4


def test_mixed_shapes_and_bad_labels_get_one_line_errors():
    model = learner("maml", True)
    with pytest.raises(FewzeroError, match="one shape"):
        model.meta_batch_loss(episodes(1) + episodes(1, shot=1))
    bad = episodes(2)
    bad[1].support_y[:] = 0
    with pytest.raises(FewzeroError, match="1 ways but the head has 3"):
        model.meta_batch_loss(bad)


def test_inductive_batch_norm_falls_back_to_the_loop():
    tasks = episodes(2)
    a, _ = meta_gradients(learner("maml", True, batch_norm="inductive"), tasks)
    b, _ = meta_gradients(learner("maml", False, batch_norm="inductive"), tasks)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)


def test_training_hands_each_optimizer_step_to_meta_batch_loss(data_root, tmp_path, monkeypatch):
    from fewzero.config import load_config
    from fewzero.learners import MAML
    from fewzero.train import train

    sizes, real = [], MAML.meta_batch_loss

    def recording(self, tasks):
        sizes.append(len(tasks))
        return real(self, tasks)

    monkeypatch.setattr(MAML, "meta_batch_loss", recording)
    config = load_config("maml", "omniglot", overrides={
        "backbone": "conv4_strided", "train_way": 5, "train_shot": 1, "train_query": 2, "episodes": 7,
        "meta_batch": 3, "val_every": 6, "val_episodes": 4, "max_minutes": None, "precision": "fp32",
        "learner": {"n_way": 5, "vmap": True}})
    metrics = train(config, tmp_path, progress=False)
    assert sizes == [3, 3] and metrics["episodes_done"] == 7  # the last step's single task takes the plain path
    assert all(h["train_loss"] == h["train_loss"] for h in metrics["history"])  # not NaN
