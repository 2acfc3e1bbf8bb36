"""Domain adaptation (fewzero.adapt, fewzero.adapt_runner, fewzero.evaluate_adapt): oracles for the losses and the
evaluator, the gradient reversal, label-free selection, and small runs that must learn."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from sklearn.metrics import confusion_matrix as sk_confusion, precision_recall_fscore_support

from fewzero.adapt import coral_loss, dann_coefficient, mk_mmd, reverse_gradient
from fewzero.adapt.selection import criteria, dev_risk, select
from fewzero.adapt_runner import train_candidates
from fewzero.adapt_setup import AdaptSettings, build_adapter
from fewzero.evaluate_adapt import evaluate_domain, proxy_a_distance, report_predictions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def numpy_mmd(x: np.ndarray, y: np.ndarray, multipliers, estimator: str) -> float:
    """MMD^2 written out with loops over pairs (the oracle)."""
    pooled = np.concatenate([x, y])
    sq = ((pooled[:, None] - pooled[None]) ** 2).sum(-1)
    base = sq.sum() / (len(pooled) * (len(pooled) - 1))

    def k(a, b):
        return np.mean([np.exp(-((a - b) ** 2).sum() / (m * base)) for m in multipliers])
    n, m = len(x), len(y)
    if estimator == "linear":
        return np.mean([k(x[2 * i], x[2 * i + 1]) + k(y[2 * i], y[2 * i + 1]) - k(x[2 * i], y[2 * i + 1])
                        - k(x[2 * i + 1], y[2 * i]) for i in range(n // 2)])
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("estimator", ["quadratic", "linear"])
def test_mmd_matches_a_direct_numpy_formula(estimator):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)), rng.normal(0.5, 1.5, size=(8, 3))
    ours = mk_mmd(torch.tensor(x), torch.tensor(y), multipliers=(0.5, 1.0, 2.0), estimator=estimator).item()
    assert ours == pytest.approx(numpy_mmd(x, y, (0.5, 1.0, 2.0), estimator), rel=1e-9, abs=1e-12)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000))
def test_mmd_is_near_zero_for_one_distribution_and_grows_with_a_mean_shift(seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(200, 4, generator=g, dtype=torch.float64), torch.randn(200, 4, generator=g, dtype=torch.float64)
    same = mk_mmd(x, y).item()
    shifts = [mk_mmd(x, y + shift).item() for shift in (0.5, 1.0, 2.0)]
    assert abs(same) < 0.02
    assert same < shifts[0] < shifts[1] < shifts[2]


def test_coral_loss_is_its_closed_form():
    rng = np.random.default_rng(1)
    xs, xt = rng.normal(size=(30, 5)), rng.normal(size=(20, 5)) * 2
    expected = np.sum((np.cov(xs, rowvar=False) - np.cov(xt, rowvar=False)) ** 2) / (4 * 5 ** 2)
    assert coral_loss(torch.tensor(xs), torch.tensor(xt)).item() == pytest.approx(expected, rel=1e-10)
    assert coral_loss(torch.tensor(xs), torch.tensor(xs + 3.0)).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("coefficient", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_is_identity_forward_and_minus_lambda_backward(coefficient):
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(5, 3, dtype=torch.float64)
    out = reverse_gradient(x, coefficient)
    assert torch.equal(out, x)
    out.backward(upstream)
    assert torch.allclose(x.grad, -coefficient * upstream)


def test_dann_schedule_rises_from_zero_towards_one():
    values = [dann_coefficient(p) for p in np.linspace(0, 1, 11)]
    assert values[0] == 0.0 and values[-1] == pytest.approx(2 / (1 + np.exp(-10)) - 1)
    assert all(a < b for a, b in zip(values, values[1:]))


def test_report_matches_scikit_learn():
    rng = np.random.default_rng(2)
    labels, predictions = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    predictions[:100] = labels[:100]
    report = report_predictions(torch.tensor(predictions), torch.tensor(labels), ["a", "b", "c", "d"])
    p, r, f, _ = precision_recall_fscore_support(labels, predictions, labels=range(4), zero_division=0)
    assert np.allclose(report.precision, 100 * p) and np.allclose(report.recall, 100 * r)
    assert np.allclose(report.f1, 100 * f)
    assert report.confusion == sk_confusion(labels, predictions, labels=range(4)).tolist()
    correct = (labels == predictions).astype(float)
    assert report.accuracy == pytest.approx(100 * correct.mean())
    assert report.ci95 == pytest.approx(1.96 * 100 * correct.std(ddof=1) / np.sqrt(200))


def test_proxy_a_distance_is_low_for_one_distribution_and_two_for_separated_ones():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 6)), rng.normal(size=(400, 6))
    assert proxy_a_distance(a, b) < 0.3
    assert proxy_a_distance(a, b + 10.0) == pytest.approx(2.0)


def test_dev_risk_matches_its_formula_and_is_exact_for_uniform_weights():
    rng = np.random.default_rng(4)
    w, loss = rng.gamma(2.0, size=300), rng.random(300)
    wl = w * loss
    eta = -np.cov(wl, w)[0, 1] / np.var(w, ddof=1)
    assert dev_risk(w, loss) == pytest.approx(wl.mean() + eta * w.mean() - eta)
    assert dev_risk(np.ones(300), loss) == pytest.approx(loss.mean())


def test_selection_weights_the_target_like_validation_errors():
    """Errors on the source validation rows that look like the target must count more under IWV and DEV."""
    rng = np.random.default_rng(5)
    source_train, target_train = rng.normal(0, 1, (300, 2)), rng.normal(1.5, 1, (300, 2))
    source_val = rng.normal(0, 1, (300, 2))
    near_target = source_val[:, 0] + source_val[:, 1] > 1.0
    scores = criteria(source_train=source_train, target_train=target_train, source_val=source_val,
                      val_correct=~near_target)
    assert scores["source_val"] == pytest.approx(100 * (1 - near_target.mean()))
    assert scores["iwv"] < scores["source_val"] - 10 and scores["dev"] < scores["source_val"] - 10
    candidates = [{"criteria": {"dev": 1.0}, "order": 0}, {"criteria": {"dev": 2.0}, "order": 1},
                  {"criteria": {"dev": 2.0}, "order": 2}]
    assert select(candidates, "dev")["order"] == 1


def shifted_pair(seed: int = 0) -> tuple[dict, tuple]:
    """Two classes; feature 1 is informative in both domains (+-1 with noise 0.7), feature 2 is a clean cue in the source (+-3) that is
    constant (3) in the target, so a source-only classifier that leans on it says one class for every target item."""
    g = torch.Generator().manual_seed(seed)

    def domain(n, target):
        y = torch.randint(0, 2, (n,), generator=g)
        s = 2.0 * y - 1
        cue = torch.full((n,), 3.0) if target else 3 * s
        return torch.stack([s + 0.7 * torch.randn(n, generator=g), cue + 0.3 * torch.randn(n, generator=g)], 1), y
    data = {"source_train": domain(400, False), "source_val": domain(200, False),
            "target_images": domain(400, True)[0], "class_names": ["a", "b"]}
    return data, domain(400, True)


def tiny(method: str, **changes) -> AdaptSettings:
    settings = {"steps": 300, "checkpoints": 1, "lr": 0.05, "backbone": "mlp", "method_args": {"hidden": 16},
                "backbone_args": {"in_features": 2, "hidden": 16, "out_features": 8}, **changes}
    return AdaptSettings(method=method, source="s", target="t", **settings)


def test_alignment_closes_most_of_the_gap_on_a_shifted_pair():
    data, test = shifted_pair()

    def accuracy(method, weight):
        settings = tiny(method, weights=(weight,))
        model = build_adapter(settings, 2, weight, test[0])
        model.load_state_dict(select(train_candidates(settings, data, progress=False), "dev")["state"])
        return evaluate_domain(model, *test, ["a", "b"]).accuracy
    oracle = 100 * float(((test[0][:, 0] > 0).long() == test[1]).float().mean())  # the informative feature alone
    base = accuracy("source_only", 0.0)
    assert base < 60 and oracle > 85
    # DAN: 88-93 % over 8 torch seeds (CORAL on this pair sticks at 50 % for 1-2 seeds in 8, so it is not here)
    assert accuracy("dan", 3.0) - base > 0.7 * (oracle - base)


@pytest.mark.parametrize("name", ["source_only", "target_oracle", "dan", "dann", "coral"])
def test_every_adaptation_method_keeps_the_contract(name):
    from fewzero.backbones.simple import MLP
    from fewzero.registry import ADAPTERS

    assert name in ADAPTERS.available()
    torch.manual_seed(0)
    model = ADAPTERS.create(name, backbone=MLP(in_features=12, hidden=8, out_features=6), feature_dim=6,
                            n_classes=3, hidden=5, weight=0.5)
    g = torch.Generator().manual_seed(1)
    xs, ys = torch.randn(8, 12, generator=g), torch.randint(0, 3, (8,), generator=g)
    xt, other = torch.randn(8, 12, generator=g) + 1, torch.randn(8, 12, generator=g) - 1
    assert model(xs).shape == (8, 3) and model.embed(xs).shape == (8, 5)
    loss, parts = model.loss(xs, ys, xt, progress=0.5)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None and p.grad.abs().sum() > 0
                                        for p in model.backbone.parameters())
    if model.uses_target_images:
        factor = 1.0 if name == "dann" else 0.5  # DANN's weight scales the reversed gradient instead
        assert model.alignment_loss_weight == factor
        assert loss.item() == pytest.approx(parts["classification"] + factor * parts["alignment"], rel=1e-5)
        assert model.loss(xs, ys, other, progress=0.5)[1]["alignment"] != parts["alignment"]
    else:
        assert model.loss(xs, ys, None)[0].item() == pytest.approx(loss.item())
    assert model.uses_target_labels == (name == "target_oracle")


def test_dann_weight_scales_the_reversed_gradient_and_not_the_domain_classifier():
    """Ganin et al.'s lambda: the features receive -lambda x schedule x the domain loss's gradient, the domain
    classifier the whole gradient, whatever lambda is."""
    from fewzero.backbones.simple import MLP
    from fewzero.registry import ADAPTERS

    g = torch.Generator().manual_seed(1)
    xs, xt = torch.randn(8, 12, generator=g), torch.randn(8, 12, generator=g) + 1

    def domain_gradients(weight):
        torch.manual_seed(0)
        model = ADAPTERS.create("dann", backbone=MLP(in_features=12, hidden=8, out_features=6), feature_dim=6,
                                n_classes=3, hidden=5, weight=weight)
        out = model.layers(torch.cat([xs, xt]))
        source, target = ({k: v[:8] for k, v in out.items()}, {k: v[8:] for k, v in out.items()})
        model.alignment(source, target, progress=0.5).backward()
        return ([p.grad.clone() for p in model.domain_classifier.parameters()],
                [p.grad.clone() for p in model.backbone.parameters()])

    (head_1, features_1), (head_3, features_3) = domain_gradients(0.1), domain_gradients(0.3)
    assert all(torch.equal(a, b) for a, b in zip(head_1, head_3))
    assert all(torch.allclose(3 * a, b, atol=1e-7) and a.abs().sum() > 0 for a, b in zip(features_1, features_3))


def test_a_diverging_weight_is_dropped_and_only_total_divergence_is_an_error():
    from fewzero.errors import FewzeroError

    data, _ = shifted_pair()
    diverged: list = []
    candidates = train_candidates(tiny("dan", steps=4, checkpoints=2, weights=(0.1, float("inf"))), data,
                                  progress=False, diverged=diverged)
    assert [(c["weight"], c["step"]) for c in candidates] == [(0.1, 2), (0.1, 4)]
    assert diverged == [{"weight": float("inf"), "step": 1}]
    with pytest.raises(FewzeroError, match="diverged for every trade-off weight"):
        train_candidates(tiny("dan", steps=4, weights=(float("inf"),)), data, progress=False)


def test_effective_sample_size_of_the_importance_weights():
    from fewzero.adapt.selection import effective_sample_size

    assert effective_sample_size(np.full(50, 3.0)) == pytest.approx(100.0)
    assert effective_sample_size(np.r_[1.0, np.zeros(99)]) == pytest.approx(1.0)
    w = np.random.default_rng(6).gamma(0.5, size=400)
    assert effective_sample_size(w) == pytest.approx(100 * w.sum() ** 2 / (400 * (w ** 2).sum()))


def test_dann_reports_its_domain_classifier_accuracy_and_a_collapsed_classifier_shows():
    """The logged domain accuracy is the classifier's on the step's batch (source 0, target 1); a classifier that
    outputs one constant reads the share of one domain (0.5 for equal batches) with zero logit spread, though its
    loss is at chance level, as when it is fooled."""
    from fewzero.backbones.simple import MLP
    from fewzero.registry import ADAPTERS

    torch.manual_seed(0)
    model = ADAPTERS.create("dann", backbone=MLP(in_features=12, hidden=8, out_features=6), feature_dim=6,
                            n_classes=3, hidden=5, weight=1.0)
    g = torch.Generator().manual_seed(1)
    xs, ys = torch.randn(8, 12, generator=g), torch.randint(0, 3, (8,), generator=g)
    xt = torch.randn(6, 12, generator=g)
    _, parts = model.loss(xs, ys, xt, progress=0.5)
    with torch.no_grad():
        logits = model.domain_classifier(model.layers(torch.cat([xs, xt]))["features"]).squeeze(1)
    expected = ((logits[:8] <= 0).sum() + (logits[8:] > 0).sum()).item() / 14
    assert parts["domain_accuracy"] == pytest.approx(expected)
    assert parts["domain_logit_std"] == pytest.approx(logits.std().item(), rel=1e-5)
    with torch.no_grad():
        last = model.domain_classifier[-1]
        last.weight.zero_(), last.bias.zero_()
    _, parts = model.loss(xs, ys, xt, progress=0.5)
    assert parts["domain_logit_std"] == 0.0 and parts["domain_accuracy"] == pytest.approx(8 / 14)
    assert parts["alignment"] == pytest.approx(np.log(2), rel=1e-6)
    assert "domain_accuracy" not in ADAPTERS.create("coral", backbone=MLP(in_features=12, hidden=8, out_features=6),
                                                    feature_dim=6, n_classes=3, hidden=5).loss(xs, ys, xt)[1]


def test_dann_domain_classifier_shapes_follow_its_options():
    from fewzero.backbones.simple import MLP
    from fewzero.registry import ADAPTERS

    def build(**kwargs):
        return ADAPTERS.create("dann", backbone=MLP(in_features=12, hidden=8, out_features=6), feature_dim=6,
                               n_classes=3, **kwargs).domain_classifier

    ganin = build(domain_hidden=100, domain_depth=1, domain_batch_norm=False)
    assert [type(m).__name__ for m in ganin] == ["Linear", "ReLU", "Linear"]
    assert ganin[0].in_features == 6 and ganin[0].out_features == 100
    default = build()  # chosen on the development pairs: Transfer-Learning-Library's discriminator on the features
    assert [type(m).__name__ for m in default] == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear"]
    assert default[0].in_features == 6 and default[0].out_features == 1024
    tllib = build(layer="hidden", domain_hidden=32, domain_depth=2, domain_batch_norm=True)
    assert [type(m).__name__ for m in tllib] == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear"]
    assert tllib[0].in_features == 100 and tllib[3].in_features == 32 and tllib[-1].out_features == 1
    with pytest.raises(ValueError, match="domain_depth"):
        build(domain_depth=0)
