"""fewzero.multitask: one head is plain training; uncertainty and GradNorm weights do what their papers say."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fewzero.errors import FewzeroError
from fewzero.multitask import GradNorm, MultiTaskModel, MultiTaskTrainer, Task, UncertaintyWeighting, accuracy
from fewzero.runlog import RunLog, read_metrics


def _backbone(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8))


def _classification(seed: int = 0, n: int = 64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def test_one_head_equals_plain_training():
    x, y = _classification()
    backbone, head = _backbone(), nn.Linear(8, 2)
    plain = nn.Sequential(copy.deepcopy(backbone), copy.deepcopy(head))
    model = MultiTaskModel(backbone, {"classes": head})
    trainer = MultiTaskTrainer(model, {"classes": Task(F.cross_entropy, metric=accuracy)}, lr=0.05)
    optimizer = torch.optim.SGD(plain.parameters(), lr=0.05, momentum=0.9)
    for step in range(20):
        batch = slice(16 * (step % 4), 16 * (step % 4 + 1))
        trainer.step({"classes": (x[batch], y[batch])})
        optimizer.zero_grad()
        F.cross_entropy(plain(x[batch]), y[batch]).backward()
        optimizer.step()
    for mine, theirs in zip(model.parameters(), plain.parameters()):
        torch.testing.assert_close(mine, theirs)
    assert trainer.end_epoch()["classes/metric"] > 50


def test_distinct_inputs_share_one_backbone_pass_and_equal_inputs_are_embedded_once():
    calls = []
    backbone = _backbone()
    backbone.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    model = MultiTaskModel(backbone, {"a": nn.Linear(8, 2), "b": nn.Linear(8, 3), "c": nn.Linear(8, 1)})
    x, other = torch.randn(5, 6), torch.randn(3, 6)
    out = model({"a": x, "b": x, "c": other})
    assert calls == [8]
    assert out["a"].shape == (5, 2) and out["b"].shape == (5, 3) and out["c"].shape == (3, 1)
    torch.testing.assert_close(out["c"], model.heads["c"](backbone(other)))


def _two_regressions(noise: tuple[float, float], n: int = 256, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    targets = [x[:, :1] + s * torch.randn(n, 1, generator=g) for s in noise]
    return x, targets


def test_uncertainty_weights_move_toward_the_noisier_task_and_match_their_closed_form():
    x, (clean, noisy) = _two_regressions((0.1, 1.0))
    model = MultiTaskModel(_backbone(), {"clean": nn.Linear(8, 1), "noisy": nn.Linear(8, 1)})
    tasks = {"clean": Task(F.mse_loss), "noisy": Task(F.mse_loss)}
    trainer = MultiTaskTrainer(model, tasks, weighting="uncertainty", weighting_lr=0.05,
                               optimizer=torch.optim.Adam(model.parameters(), lr=0.01))
    for step in range(300):
        batch = slice(64 * (step % 4), 64 * (step % 4 + 1))
        trainer.step({"clean": (x[batch], clean[batch]), "noisy": (x[batch], noisy[batch])})
    weights = trainer.weights()
    assert weights["noisy"] < weights["clean"] / 5  # sigma^2 went up on the noisy task
    with torch.no_grad():  # at the optimum of exp(-s) L + s, exp(s) equals the loss
        out = model({"clean": x, "noisy": x})
        for name, target in (("clean", clean), ("noisy", noisy)):
            loss = float(F.mse_loss(out[name], target))
            assert 1 / weights[name] == pytest.approx(loss, rel=0.5)


def _gradient_norms(model: MultiTaskModel, batch: dict, weights: dict) -> list[float]:
    shared = [model.backbone[-1].weight]
    out = model({n: b[0] for n, b in batch.items()})
    return [weights[n] * float(torch.autograd.grad(F.mse_loss(out[n], b[1]), shared, retain_graph=True)[0].norm())
            for n, b in batch.items()]


@pytest.mark.parametrize("weighting, balanced", [("gradnorm", True), ("fixed", False)])
def test_gradnorm_equalises_the_gradient_norms_of_a_large_and_a_small_task(weighting, balanced):
    """With the network held still (lr 0) each task's raw gradient norm g_t is fixed, so GradNorm (alpha 0) must
    find the weights w_t ~ 1 / g_t that make the weighted norms w_t g_t equal; fixed weights leave them ~30x apart."""
    x, (small, _) = _two_regressions((0.5, 0.5))
    large = 30 * small
    model = MultiTaskModel(_backbone(), {"small": nn.Linear(8, 1), "large": nn.Linear(8, 1)})
    tasks = {"small": Task(F.mse_loss), "large": Task(F.mse_loss)}
    trainer = MultiTaskTrainer(model, tasks, weighting=weighting, optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                               weighting_lr=0.01, gradnorm_alpha=0.0)
    ratios = []
    for step in range(300):
        rows = slice(64 * (step % 4), 64 * (step % 4 + 1))
        batch = {"small": (x[rows], small[rows]), "large": (x[rows], large[rows])}
        trainer.step(batch)
        if step >= 260:
            norms = _gradient_norms(model, batch, trainer.weights())
            ratios.append(norms[1] / norms[0])
    ratio = sum(ratios) / len(ratios)
    assert (0.67 < ratio < 1.5) if balanced else (ratio > 10.0)
    assert sum(trainer.weights().values()) == pytest.approx(2.0)


def test_uncertainty_and_gradnorm_losses_follow_their_formulas():
    losses = torch.tensor([0.5, 2.0])
    weighting = UncertaintyWeighting(["a", "b"])
    with torch.no_grad():
        weighting.log_var.copy_(torch.tensor([0.3, -0.2]))
    expected = sum(float(torch.exp(-s)) * float(v) + float(s) for s, v in zip(weighting.log_var.detach(), losses))
    assert float(weighting(losses)) == pytest.approx(expected)
    with pytest.raises(FewzeroError, match="alpha"):
        GradNorm(["a"], alpha=-1)


def test_end_epoch_logs_every_task_to_metrics_jsonl(tmp_path):
    x, y = _classification()
    model = MultiTaskModel(_backbone(), {"classes": nn.Linear(8, 2), "sign": nn.Linear(8, 2)})
    tasks = {"classes": Task(F.cross_entropy, metric=accuracy), "sign": Task(F.cross_entropy)}
    with RunLog(tmp_path) as log:
        trainer = MultiTaskTrainer(model, tasks, weights={"sign": 0.5}, log=log)
        for _ in range(2):
            trainer.step({"classes": (x, y), "sign": (x, (x[:, 2] > 0).long())})
            trainer.end_epoch()
    rows = read_metrics(tmp_path)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"classes/loss", "classes/metric", "sign/loss", "classes/weight", "sign/weight", "total"} <= set(rows[0])
    assert rows[0]["sign/weight"] == 0.5 and "sign/metric" not in rows[0]


def test_bad_inputs_are_one_line_errors():
    model = MultiTaskModel(_backbone(), {"a": nn.Linear(8, 2)})
    task = {"a": Task(F.cross_entropy)}
    cases = [
        (lambda: MultiTaskTrainer(model, task, weighting="equal"), "unknown loss weighting"),
        (lambda: MultiTaskTrainer(model, {"b": Task(F.cross_entropy)}), "same names"),
        (lambda: MultiTaskTrainer(model, task, weighting="uncertainty", weights={"a": 2}), "weighting='fixed'"),
        (lambda: MultiTaskTrainer(model, task, weights={"z": 1}), "not a task"),
        (lambda: MultiTaskTrainer(model, task, weights={"a": -1}), "0 or positive"),
        (lambda: MultiTaskTrainer(model, task).step({}), "no items for task 'a'"),
        (lambda: model({"b": torch.zeros(1, 6)}), "no head named 'b'"),
        (lambda: MultiTaskModel(_backbone(), {}), "at least one head"),
        (lambda: MultiTaskTrainer(model, {"a": Task(lambda out, y: out.sum() * float("nan"))}).step(
            {"a": (torch.zeros(2, 6), torch.zeros(2).long())}), "not finite"),
    ]
    for make, message in cases:
        with pytest.raises(FewzeroError, match=message) as info:
            make()
        assert "\n" not in str(info.value)
