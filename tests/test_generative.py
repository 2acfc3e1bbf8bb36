"""Feature generators (f-CLSWGAN, CVAE, TF-VAEGAN): learned distributions, the gradient penalty, seeds, errors."""
from __future__ import annotations

import pytest
import torch
from zsl_synthetic import linear_problem

from fewzero.errors import FewzeroError
from fewzero.evaluate_zsl import evaluate_zero_shot
from fewzero.zsl.cvae import CVAE
from fewzero.zsl.fclswgan import FCLSWGAN
from fewzero.zsl.gan_parts import ConditionalMLP, gradient_penalty
from fewzero.zsl.tfvaegan import TFVAEGAN

FAST = {"hidden_dim": 256, "noise_dim": 16, "epochs": 20, "n_synthetic": 100, "classifier_epochs": 10,
        "progress": False}
LEARNERS = {"fclswgan": lambda **kw: FCLSWGAN(**{**FAST, "epochs": 40, **kw}),
            "cvae": lambda **kw: CVAE(**{**FAST, **kw}), "tfvaegan": lambda **kw: TFVAEGAN(**{**FAST, **kw})}
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: one thread is faster


def gaussian_classes(seed: int = 0, n_classes: int = 30, n_attributes: int = 6, dim: int = 12, per_class: int = 60,
                     noise: float = 0.5):
    """Class c has semantics s_c and items ~ N(M s_c, noise^2 I): returns s (C, a), true means (C, d), x, y."""
    g = torch.Generator().manual_seed(seed)
    semantics = torch.randn(n_classes, n_attributes, generator=g)
    semantics = semantics / semantics.norm(dim=1, keepdim=True)  # the learners normalise; keep means linear
    means = 3.0 * semantics @ torch.randn(n_attributes, dim, generator=g)
    y = torch.arange(n_classes).repeat_interleave(per_class)
    return semantics, means, means[y] + noise * torch.randn(len(y), dim, generator=g), y


# Tiny generators for the class-mean tests: one fit takes about 1 s (CVAE) to 3 s (f-CLSWGAN, 240 steps) on a CPU.
TINY = {"fclswgan": (FCLSWGAN, {"hidden_dim": 64, "noise_dim": 16, "epochs": 20, "batch_size": 128, "lr": 2e-3}),
        "cvae": (CVAE, {"hidden_dim": 64, "noise_dim": 16, "epochs": 20}),
        # TF-VAEGAN (5 seeds): seen 0.14-0.16, held out 0.19-0.24, 6/6; blind 1.44-1.47, 1.59-1.67, 0/6. At
        # gan_weight 1 its barely trained critic pulls the tiny generator off (seen 0.24-0.31).
        "tfvaegan": (TFVAEGAN, {"hidden_dim": 64, "noise_dim": 16, "epochs": 20, "batch_size": 128, "lr": 2e-3,
                                "gan_weight": 0.1, "critic_steps": 2})}
N_FIT = 24  # gaussian_classes' classes 24..29 are never seen
SEEDS = (0, 1, 2)


def blind(cls: type) -> type:
    """``cls`` with a generator that never sees the semantics (zeros in training and generation): a broken learner
    that can only learn the mixture of all seen classes."""
    class Blind(cls):
        def _train_generator(self, x, y, semantics, classifier):
            return super()._train_generator(x, y, torch.zeros_like(semantics), classifier)

        def _synthesize(self, semantics, n, seed):
            return super()._synthesize(torch.zeros_like(semantics), n, seed)
    return Blind


def relative_mean_errors(model, semantics: torch.Tensor, means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class c of (C, a) semantics: (C,) ||generated mean - true mean|| / (distance from the true mean to the
    nearest other class's true mean), and (C,) the class whose true mean is nearest the generated one."""
    fake, labels = model.generate(semantics, 200)
    fake_means = torch.stack([fake[labels == c].mean(0) for c in range(len(semantics))])
    nearest_other = torch.cdist(means, means).fill_diagonal_(float("inf")).min(1).values
    return (fake_means - means).norm(dim=1) / nearest_other, torch.cdist(fake_means, means).argmin(1)


def means_land_near_the_true_ones(make, seed: int) -> tuple[bool, dict]:
    """Fit on classes 0..23 and check the generated class means, seen and held out, by medians over classes.

    Passes when the median generated mean lies within 0.3 (seen classes) or 0.4 (held-out classes) of the distance
    to the nearest other class, and is nearest its own true mean for at least 5 of the 6 held-out classes. Measured
    on 26 (seed, data seed) pairs and ATen's avx2 / avx512 / default kernels: medians 0.09-0.22 (seen) and
    0.12-0.23 (held out), 6/6 matched; a generator blind to the semantics: 1.3-1.7 and 1.5-1.9, at most 1/6.
    """
    semantics, means, x, y = gaussian_classes()
    keep = y < N_FIT
    model = make(seed=seed).fit(x[keep], y[keep], semantics[:N_FIT])
    ratio, nearest = relative_mean_errors(model, semantics, means)
    stats = {"seen": ratio[:N_FIT].median().item(), "held_out": ratio[N_FIT:].median().item(),
             "held_out_matched": int((nearest[N_FIT:] == torch.arange(N_FIT, len(means))).sum())}
    return stats["seen"] < 0.3 and stats["held_out"] < 0.4 and stats["held_out_matched"] >= 5, stats


def majority(make) -> tuple[bool, list[dict]]:
    """Whether most of ``SEEDS`` pass ``means_land_near_the_true_ones`` (stops once the majority is decided), so one
    unlucky GAN trajectory on some CPU's floating point neither fails the test nor passes a broken generator."""
    votes, stats = [], []
    for seed in SEEDS:
        passed, numbers = means_land_near_the_true_ones(make, seed)
        votes.append(passed)
        stats.append({"seed": seed, **numbers})
        if max(votes.count(True), votes.count(False)) > len(SEEDS) // 2:
            break
    return votes.count(True) > len(SEEDS) // 2, stats


@pytest.mark.parametrize("name", sorted(TINY))
def test_synthetic_class_means_land_near_the_true_ones_also_for_held_out_classes(name):
    cls, settings = TINY[name]
    passed, stats = majority(lambda seed: cls(**settings, seed=seed, progress=False))
    assert passed, stats


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_generator_blind_to_the_semantics_fails_the_class_mean_check(name):
    cls, settings = TINY[name]
    passed, stats = majority(lambda seed: blind(cls)(**settings, seed=seed, progress=False))
    assert not passed, stats
    assert all(s["seen"] > 1 and s["held_out"] > 1 for s in stats), stats  # far off, not near the bound


def test_gradient_penalty_of_a_linear_critic_is_known_in_closed_form():
    g = torch.Generator().manual_seed(0)
    w, v = torch.randn(7, generator=g), torch.randn(3, generator=g)
    real, fake, s = torch.randn(16, 7, generator=g), torch.randn(16, 7, generator=g), torch.randn(16, 3, generator=g)
    penalty = gradient_penalty(lambda x, s: x @ w + s @ v, real, fake, s)
    assert torch.allclose(penalty, (w.norm() - 1) ** 2)


def test_gradient_penalty_matches_a_per_item_autograd_loop():
    torch.manual_seed(0)
    critic = ConditionalMLP(5, 2, 8, 1)
    real, fake, s = torch.randn(6, 5), torch.randn(6, 5), torch.randn(6, 2)
    penalty = gradient_penalty(critic, real, fake, s, generator=torch.Generator().manual_seed(3))
    alpha = torch.rand(6, 1, generator=torch.Generator().manual_seed(3))
    terms = []
    for i in range(6):
        point = (alpha[i] * real[i] + (1 - alpha[i]) * fake[i]).requires_grad_(True)
        grad, = torch.autograd.grad(critic(point[None], s[i:i + 1]).sum(), point)
        terms.append((grad.norm() - 1) ** 2)
    assert torch.allclose(penalty, torch.stack(terms).mean(), atol=1e-6)
    penalty.backward()  # differentiable w.r.t. the critic's weights
    assert critic.hidden.weight.grad is not None and critic.hidden.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_same_seed_same_numbers_other_seed_other_numbers(name):
    semantics, _, x, y = gaussian_classes(n_classes=8, per_class=20)
    quick = {"epochs": 3, "classifier_epochs": 2}
    a, b, c = (LEARNERS[name](seed=seed, **quick).fit(x[y < 6], y[y < 6], semantics[:6]) for seed in (1, 1, 2))
    assert torch.equal(a.generate(semantics, 5)[0], b.generate(semantics, 5)[0])
    assert torch.equal(a(x, semantics), b(x, semantics))
    assert not torch.equal(a.generate(semantics, 5)[0], c.generate(semantics, 5)[0])
    # Trained once for both batches; rows agree up to the BLAS kernel a batch size picks (not bitwise on every CPU).
    assert torch.allclose(a(x[:3], semantics), a(x, semantics)[:3], rtol=1e-5, atol=1e-6)
    assert len(a._classifiers) == 1


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_the_whole_pipeline_reaches_high_unseen_accuracy(name):
    data = linear_problem(seed=0)
    report = evaluate_zero_shot(LEARNERS[name](), data, seed=0, calibrate=name == "cvae")
    # Over learner seeds 0-7: t1 88-100 and H 84-99 (f-CLSWGAN), t1 100 and H 86-98 (CVAE), t1 100 and H 100
    # (TF-VAEGAN); one unseen class lost costs 10 points of t1. A generator blind to the semantics scores t1 10-20
    # and H 0-16.
    assert report.t1 >= 70, report
    assert report.h >= 60 and report.calibrated_h >= 60, report


def test_generalized_scores_use_real_seen_features_and_never_unseen_ones():
    semantics, _, x, y = gaussian_classes(n_classes=8, per_class=20)
    model = LEARNERS["cvae"](epochs=2, classifier_epochs=2).fit(x[y < 6], y[y < 6], semantics[:6])
    model(x[:2], semantics)
    assert model.train_x_.shape[0] == int((y < 6).sum())  # only the training items are kept
    # Scoring seen classes only needs no generator: the classifier is the same one a plain softmax would learn.
    scores = model(x[:4], semantics[[2, 0]])
    assert scores.shape == (4, 2) and torch.allclose(scores.exp().sum(1), torch.ones(4))


def test_bad_inputs_are_one_line_errors():
    semantics, _, x, y = gaussian_classes(n_classes=8, per_class=20)
    for make in LEARNERS.values():
        with pytest.raises(FewzeroError, match="n_synthetic is 0"):
            make(n_synthetic=0)
    model = LEARNERS["cvae"](epochs=1, classifier_epochs=1).fit(x[y < 6], y[y < 6], semantics[:6])
    cases = {
        "semantics have 5 dimensions but the generator was trained on 6": (semantics[:, :5], 3),
        "class 1 has no semantics": (torch.cat([semantics[:1], torch.full((1, 6), float("nan"))]), 3),
        "a class without semantics cannot be generated": (semantics[:0], 3),
        "at least 1 feature per class": (semantics, 0),
    }
    for message, (s, n) in cases.items():
        with pytest.raises(FewzeroError, match=message) as info:
            model.generate(s, n)
        assert "\n" not in str(info.value)
    with pytest.raises(FewzeroError, match="semantics have 5 dimensions"):
        model(x, semantics[:, :5])
    with pytest.raises(FewzeroError, match="NaN"):
        model(x, torch.cat([semantics[:3], torch.full((1, 6), float("nan"))]))
    with pytest.raises(FewzeroError, match="not fitted"):
        FCLSWGAN().generate(semantics, 3)


def test_a_diverging_critic_stops_training_with_the_iteration_and_learning_rate():
    semantics, _, x, y = gaussian_classes(n_classes=6, per_class=10)
    with pytest.raises(FewzeroError, match=r"critic loss became (nan|inf|-inf) at iteration \d+ \(learning rate "
                                           r"1e\+30\)") as info:
        LEARNERS["fclswgan"](lr=1e30, epochs=50).fit(x, y, semantics)
    assert "\n" not in str(info.value)
