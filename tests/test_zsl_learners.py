"""Zero-shot learners: oracles for the closed forms, and one contract test over every registered learner."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from zsl_synthetic import linear_problem

from fewzero.errors import FewzeroError
from fewzero.registry import ZERO_SHOT
from fewzero.zsl.eszsl import ESZSL
from fewzero.zsl.sae import SAE

pytestmark = pytest.mark.usefixtures("one_torch_thread")

METHODS = ZERO_SHOT.available()
# the feature generators at a quarter of their default width and a tenth of their epochs for the structural
# contracts (same seed, relabelling, bad inputs), which hold the same at any size, sooner; the learning contract
# keeps the defaults
SMALL = {name: {"hidden_dim": 256, "epochs": 3} for name in ("fclswgan", "cvae", "tfvaegan")}


# the learning contract keeps the defaults, except TF-VAEGAN's 1024-wide feedback module, which dominates its time
# on 32-d features (4x slower than f-CLSWGAN there, 1.2x on CUB-50's 256-d ones), and CVAE's width: 256 wide they
# learn the same (learner seeds 0-3: TF-VAEGAN 100 %, CVAE 99-100 %) in a third (CVAE 1.2 s instead of 4.7 s)
LEARNING = {"tfvaegan": {"hidden_dim": 256}, "cvae": {"hidden_dim": 256}}


def create(method: str):
    return ZERO_SHOT.create(method, **SMALL.get(method, {}))


@pytest.fixture(scope="module")
def problem():
    data = linear_problem(seed=0)
    seen, unseen = data.seen_classes, data.unseen_classes
    return {"x": data.train_x, "y": data.train_y, "s": data.semantics[seen], "test_x": data.test_unseen_x,
            "test_y": data.test_unseen_y - len(seen), "unseen_s": data.semantics[unseen]}


def test_all_six_learners_are_registered():
    assert {"dap", "eszsl", "ale", "devise", "sje", "sae"} <= set(METHODS)


@pytest.mark.parametrize("normalize, center", [(False, False), (True, True)])
def test_eszsl_matches_a_direct_numpy_solve_of_its_closed_form(problem, normalize, center):
    x, y, s = problem["x"].double().numpy() + 3.0, problem["y"].numpy(), problem["s"].double().numpy()
    mean = x.mean(0) if center else np.zeros(x.shape[1])
    x = x - mean
    if normalize:
        s = s / np.linalg.norm(s, axis=1, keepdims=True)
    gamma, lam = 3.0, 0.5
    targets = -np.ones((len(y), len(s)))
    targets[np.arange(len(y)), y] = 1
    # The paper's Eq. 4 in its own (column-major) notation: X is d x m, Y is m x z, S is a x z.
    X, S = x.T, s.T
    expected = np.linalg.inv(X @ X.T + gamma * np.eye(X.shape[0])) @ X @ targets @ S.T @ \
        np.linalg.inv(S @ S.T + lam * np.eye(S.shape[0]))
    model = ESZSL(gamma=gamma, lam=lam, center_features=center, normalize_semantics=normalize)
    model.fit(problem["x"] + 3.0, problem["y"], problem["s"])
    np.testing.assert_allclose(model.V_.double().numpy(), expected, rtol=1e-4, atol=1e-6)
    scores = model(problem["test_x"] + 3.0, problem["unseen_s"]).double().numpy()
    unseen = problem["unseen_s"].double().numpy()
    if normalize:
        unseen = unseen / np.linalg.norm(unseen, axis=1, keepdims=True)
    test_x = problem["test_x"].double().numpy() + 3.0 - mean
    np.testing.assert_allclose(scores, test_x @ expected @ unseen.T, rtol=1e-3, atol=1e-4)


def test_sae_solves_its_sylvester_equation(problem):
    lam = 0.7
    model = SAE(lam=lam, normalize_semantics=False).fit(problem["x"], problem["y"], problem["s"])
    x, sy, w = problem["x"].double(), problem["s"][problem["y"]].double(), model.W_.double()
    left = sy.T @ sy @ w + lam * w @ x.T @ x
    right = (1 + lam) * sy.T @ x
    assert torch.allclose(left, right, rtol=1e-4, atol=1e-3 * float(right.abs().max()))


@pytest.mark.parametrize("method", METHODS)
def test_contract_learns_a_linear_zero_shot_problem(problem, method):
    model = ZERO_SHOT.create(method, **LEARNING.get(method, {}))
    assert model.fit(problem["x"], problem["y"], problem["s"]) is model
    scores = model(problem["test_x"], problem["unseen_s"])
    assert scores.shape == (len(problem["test_x"]), len(problem["unseen_s"]))
    assert torch.isfinite(scores).all()
    pred = model.predict(problem["test_x"], problem["unseen_s"])
    assert pred.shape == problem["test_y"].shape and torch.equal(pred, scores.argmax(1))
    per_class = [float((pred[problem["test_y"] == c] == c).float().mean()) for c in problem["test_y"].unique()]
    assert 100 * np.mean(per_class) >= 80, f"{method} zero-shot accuracy {100 * np.mean(per_class):.1f} %"
    # Any set of classes can be scored, e.g. three of them.
    assert model(problem["test_x"][:5], problem["unseen_s"][:3]).shape == (5, 3)


@pytest.mark.parametrize("method", METHODS)
def test_contract_same_seed_same_model_and_numpy_inputs(problem, method):
    first = create(method).fit(problem["x"], problem["y"], problem["s"])
    second = create(method).fit(problem["x"].numpy(), problem["y"].numpy(), problem["s"].numpy())
    assert torch.equal(first(problem["test_x"], problem["unseen_s"]),
                       second(problem["test_x"].numpy(), problem["unseen_s"].numpy()))


@pytest.mark.parametrize("method", METHODS)
def test_contract_relabelling_the_classes_permutes_the_scores(problem, method):
    perm = torch.randperm(len(problem["s"]), generator=torch.Generator().manual_seed(1))
    inverse = torch.argsort(perm)  # new label of old class c is inverse[c]
    plain = create(method).fit(problem["x"], problem["y"], problem["s"])
    relabelled = create(method).fit(problem["x"], inverse[problem["y"]], problem["s"][perm])
    a, b = plain(problem["test_x"], problem["s"]), relabelled(problem["test_x"], problem["s"][perm])
    assert torch.allclose(a[:, perm], b, rtol=1e-3, atol=1e-3 * float(a.abs().max()))


@pytest.mark.parametrize("method", METHODS)
def test_contract_bad_inputs_are_one_line_errors(problem, method):
    x, y, s = problem["x"], problem["y"], problem["s"]
    model = create(method)
    with pytest.raises(FewzeroError, match="not fitted"):
        model(x, s)
    cases = {
        "has no semantic vector": (x, torch.where(y == 0, len(s), y), s),  # a label beyond the semantics rows
        "NaN": (x, y, torch.cat([s[:1] * float("nan"), s[1:]])),
        "feature rows but": (x[:-1], y, s),
        "integer": (x, y.float(), s),
    }
    for message, (bx, by, bs) in cases.items():
        with pytest.raises(FewzeroError, match=message) as info:
            model.fit(bx, by, bs)
        assert "\n" not in str(info.value)
    model.fit(x, y, s)
    with pytest.raises(FewzeroError, match="semantics have 15 dimensions"):
        model(x, s[:, :15])
    with pytest.raises(FewzeroError, match="features have 31 dimensions"):
        model(x[:, :31], s)
    with pytest.raises(FewzeroError, match="NaN"):
        model(x, torch.cat([s[:3], torch.full((1, s.shape[1]), float("nan"))]))


def test_unknown_options_are_errors():
    with pytest.raises(FewzeroError, match="space"):
        SAE(space="pixels")
    with pytest.raises(FewzeroError, match="optimizer"):
        ZERO_SHOT.create("ale", optimizer="rmsprop")
