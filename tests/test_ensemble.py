"""Ensembles: one member is that member, weights on the simplex, the combiner never sees test data, the
evaluator's member report against an oracle, and the command line (good and bad inputs)."""
import copy
import json

import numpy as np
import pytest
import torch
import yaml

import bad_input_helpers
from bad_input_helpers import _untrained, fails
from fewzero.checkpoint import save_checkpoint
from fewzero.cli import main
from fewzero.ensemble import Combiner, Ensemble, ZeroShotEnsemble, standardise
from fewzero.ensemble.combine import check_validation, choose_temperatures, choose_weights, simplex_candidates
from fewzero.errors import FewzeroError
from fewzero.evaluate import evaluate
from fewzero.evaluate_zsl import evaluate_zero_shot
from fewzero.registry import BACKBONES, LEARNERS, ZERO_SHOT
from fewzero.sampling import EpisodeSampler
from zsl_synthetic import linear_problem

pytestmark = pytest.mark.usefixtures("one_torch_thread")
isolated = bad_input_helpers.isolated  # autouse: an empty cache, no data and no network for every test here


def tiny(method: str, seed: int = 0, **settings):
    torch.manual_seed(seed)
    return LEARNERS.create(method, backbone=BACKBONES.create("conv4", in_channels=1, hidden=8), **settings)


def tiny_dataset(way: int = 5, per_class: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(way, 1, 28, 28, generator=g)
    labels = torch.arange(way).repeat_interleave(per_class)
    items = prototypes[labels] + 0.6 * torch.rand(labels.numel(), 1, 28, 28, generator=g)
    dataset = torch.utils.data.TensorDataset(items, labels)
    dataset.labels = labels
    return dataset


def synthetic_validation(n_members: int, good: int = 0, episodes: int = 6, way: int = 5, query: int = 20,
                         seed: int = 0):
    """Validation scores where member ``good`` is informative (about 80 % right) and the others are noise."""
    g = torch.Generator().manual_seed(seed)
    scores, labels = [], []
    for _ in range(episodes):
        y = torch.randint(0, way, (query,), generator=g)
        s = torch.randn(n_members, query, way, generator=g)
        s[good] += 2.5 * torch.nn.functional.one_hot(y, way)
        scores.append(s), labels.append(y)
    return scores, labels


# --- one member ---------------------------------------------------------------------------------------------------

def test_an_ensemble_of_one_few_shot_member_is_that_member():
    data = tiny_dataset()
    member = tiny("protonet").eval()
    ensemble = Ensemble(members=[copy.deepcopy(member)]).eval()
    x, y = data.tensors
    support, query = torch.arange(0, 30, 6), torch.arange(30)
    with torch.no_grad():
        expected = member.fit(x[support], y[:30:6])(x[query]).softmax(1)
        got = ensemble.fit(x[support], y[:30:6])(x[query]).softmax(1)
    torch.testing.assert_close(got, expected)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    # after fitting the combiner (calibration on) the argmax stays the member's
    scores, labels = synthetic_validation(1)
    ensemble.fit_combiner(scores, labels)
    assert ensemble.combiner.weights_.tolist() == [1.0]
    with torch.no_grad():
        assert torch.equal(ensemble(x[query]).argmax(1), expected.argmax(1))


def test_an_ensemble_of_one_zero_shot_member_is_that_member():
    data = linear_problem(seed=1)
    member = ZERO_SHOT.create("eszsl", gamma=1.0, lam=0.1)
    alone = evaluate_zero_shot(copy.deepcopy(member), data, calibrate=False)
    ensemble = ZeroShotEnsemble([copy.deepcopy(member)], calibrate=False)
    report = evaluate_zero_shot(ensemble, data, calibrate=False)
    assert report.t1 == alone.t1 and (report.u, report.s) == (alone.u, alone.s)
    fitted = copy.deepcopy(member).fit(data.train_x, data.train_y, data.semantics[data.seen_classes])
    unseen = data.semantics[data.unseen_classes]
    with torch.no_grad():
        torch.testing.assert_close(ensemble(data.test_unseen_x, unseen).softmax(1),
                                   standardise(fitted(data.test_unseen_x, unseen)).softmax(1))
    assert report.members == {"eszsl": alone.t1}


# --- weights and stacking -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_members", [1, 2, 3, 7])
def test_simplex_candidates_are_on_the_simplex(n_members):
    candidates = simplex_candidates(n_members, step=0.1)
    assert (candidates >= 0).all()
    torch.testing.assert_close(candidates.sum(1), torch.ones(candidates.shape[0], dtype=torch.float64))
    if n_members <= 3:  # the whole grid: C(10 + M - 1, M - 1) points
        assert candidates.shape[0] == {1: 1, 2: 11, 3: 66}[n_members]


@pytest.mark.parametrize("n_members,good", [(2, 1), (3, 0), (6, 4)])
def test_mean_prob_weights_sum_to_one_and_favour_the_informative_member(n_members, good):
    scores, labels = synthetic_validation(n_members, good)
    pairs = check_validation(scores, labels, n_members)
    weights = choose_weights(pairs, choose_temperatures(pairs))
    assert abs(float(weights.sum()) - 1.0) < 1e-9 and (weights >= 0).all()
    assert int(weights.argmax()) == good and float(weights[good]) >= 0.5
    combiner = Combiner(n_members).fit(scores, labels)
    combined = torch.cat([combiner(s).argmax(1) == y for s, y in zip(scores, labels)]).double().mean()
    alone = torch.cat([s[good].argmax(1) == y for s, y in zip(scores, labels)]).double().mean()
    assert combined >= alone  # the search is over the simplex, which holds the good member alone


def test_stacking_is_label_order_free_and_depends_on_validation_only():
    scores, labels = synthetic_validation(3, good=2)
    first = Combiner(3, mode="stacking").fit(scores, labels)
    again = Combiner(3, mode="stacking").fit(scores, labels)
    torch.testing.assert_close(first.coef_, again.coef_, rtol=0, atol=0)
    assert float(first.coef_.view(2, 3)[:, 2].sum()) > float(first.coef_.view(2, 3)[:, 0].sum())
    test = torch.randn(3, 7, 5)
    perm = torch.randperm(5)
    torch.testing.assert_close(first(test[:, :, perm]), first(test)[:, perm])


def test_bad_combiner_inputs_say_what_to_do():
    with pytest.raises(FewzeroError, match="unknown combine mode 'median'"):
        Combiner(2, mode="median")
    with pytest.raises(FewzeroError, match="at least one member"):
        Ensemble(members=[])
    with pytest.raises(FewzeroError, match="stacking_c must be a positive number"):
        Combiner(2, mode="stacking", stacking_c="strong")
    with pytest.raises(FewzeroError, match="step must divide 1"):
        simplex_candidates(3, step=0.3)
    with pytest.raises(FewzeroError, match="not fitted"):
        Combiner(2, mode="stacking")(torch.zeros(2, 3, 4))
    with pytest.raises(FewzeroError, match="not a zero-shot learner"):
        ZeroShotEnsemble([tiny("protonet")])


def test_few_shot_combiner_never_changes_on_test_episodes():
    data, poisoned = tiny_dataset(seed=1), tiny_dataset(seed=2)
    poisoned.tensors[0].uniform_(-50, 50)  # garbage items with shuffled labels
    poisoned.labels = poisoned.labels[torch.randperm(poisoned.labels.numel())]
    ensemble = Ensemble(members=[tiny("protonet"), tiny("matching", seed=1)], combine="stacking")
    scores, labels = synthetic_validation(2)
    ensemble.fit_combiner(scores, labels)
    state = {k: v.clone() for k, v in ensemble.combiner.state_dict().items()}
    for dataset in (data, poisoned):
        evaluate(ensemble, dataset, EpisodeSampler(dataset.labels, 5, 1, 2, 2, seed=0), progress=False)
        assert all(torch.equal(state[k], v) for k, v in ensemble.combiner.state_dict().items())


@pytest.mark.parametrize("combine", ["stacking", "mean_prob"])
def test_zero_shot_combiner_is_the_same_with_poisoned_test_data(combine):
    clean = linear_problem(seed=2)
    poisoned = copy.deepcopy(clean)
    g = torch.Generator().manual_seed(5)
    poisoned.test_unseen_x = 100 * torch.randn(poisoned.test_unseen_x.shape, generator=g)
    poisoned.test_seen_x = 100 * torch.randn(poisoned.test_seen_x.shape, generator=g)
    poisoned.test_unseen_y = poisoned.test_unseen_y[torch.randperm(poisoned.test_unseen_y.numel(), generator=g)]
    states = []
    for data in (clean, poisoned):
        members = [ZERO_SHOT.create("eszsl"), ZERO_SHOT.create("sae"), ZERO_SHOT.create("dap")]
        ensemble = ZeroShotEnsemble(members, combine=combine)
        evaluate_zero_shot(ensemble, data)
        states.append(ensemble.state_dict())
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


# --- the evaluator's member report --------------------------------------------------------------------------------

def test_member_accuracies_and_disagreement_match_an_oracle():
    dataset = tiny_dataset(way=6, per_class=5, seed=3)
    members = [tiny("protonet", 0), tiny("matching", 1), tiny("protonet", 2, distance="cosine")]
    ensemble = Ensemble(members=[copy.deepcopy(m) for m in members], names=["a", "b", "c"]).eval()
    sampler = EpisodeSampler(dataset.labels, 4, 1, 3, 5, seed=7)
    report = evaluate(ensemble, dataset, sampler, progress=False)
    alone = [evaluate(copy.deepcopy(m), dataset, sampler, progress=False) for m in members]
    predictions, truths = [[] for _ in members], []
    for indices in sampler:  # numpy oracle: every member on its own, episode by episode, on raw items
        episode = sampler.collate([dataset[i] for i in indices])
        truths.append(episode.query_y.numpy())
        for m, member in enumerate(members):
            member.eval().fit(episode.support_x, episode.support_y)
            with torch.no_grad():
                predictions[m].append(member(episode.query_x).argmax(1).numpy())
    pred = np.array([np.concatenate(p) for p in predictions])
    expected = 100 * (pred[:, None, :] != pred[None, :, :]).mean(2)
    np.testing.assert_allclose(np.array(report.disagreement), expected, atol=1e-9)
    truth = np.concatenate(truths)
    for m, name in enumerate("abc"):
        per_episode = (pred[m] == truth).reshape(len(sampler), -1).mean(1) * 100
        assert report.members[name]["accuracy"] == pytest.approx(per_episode.mean())
        assert report.members[name]["accuracy"] == pytest.approx(alone[m].accuracy)
    assert "pairwise disagreement" in str(report) and "a/b" in str(report)


# --- the command line ---------------------------------------------------------------------------------------------

def write_config(folder, members, **learner):
    path = folder / "ensemble.yaml"
    path.write_text(yaml.safe_dump({"method": "ensemble", "dataset": "omniglot", "test_way": 5, "test_shot": 1,
                                    "test_query": 2, "test_episodes": 3, "val_episodes": 3,
                                    "learner": {"members": members, **learner}}))
    return path


@pytest.fixture
def foreign_checkpoint(tmp_path_factory):
    payload = _untrained("protonet")
    payload["config"]["dataset"] = "miniimagenet"
    return save_checkpoint(tmp_path_factory.mktemp("foreign") / "mini.pt", payload)


@pytest.mark.parametrize("case", ["empty", "missing", "other_dataset", "other_kind", "combine", "member_key",
                                  "nested", "zero_shot_with_few_shot"])
def test_bad_ensemble_configs_are_one_line_errors(capfd, tmp_path, tmp_path_factory, foreign_checkpoint, case):
    folder = tmp_path_factory.mktemp("configs")
    members, learner = [{"method": "protonet"}], {}
    fragments = {
        "empty": ("has no members", "learner.members"),
        "missing": ("ensemble member 2 (matching)", "does not exist"),
        "other_dataset": ("trained on miniimagenet, not omniglot",),
        "other_kind": ("member 2 (eszsl)", "is a zero-shot learner", "one kind"),
        "combine": ("unknown combine mode 'median'",),
        "member_key": ("unknown key 'weight'",),
        "nested": ("cannot be an ensemble",),
        "zero_shot_with_few_shot": ("member 2 (protonet)", "is a few-shot learner", "one kind"),
    }[case]
    if case == "empty":
        members = []
    elif case == "missing":
        members.append({"method": "matching", "checkpoint": str(folder / "nope.pt")})
    elif case == "other_dataset":
        members.append({"method": "protonet", "checkpoint": str(foreign_checkpoint)})
    elif case == "other_kind":
        members.append({"method": "eszsl"})
    elif case == "combine":
        learner = {"combine": "median"}
    elif case == "member_key":
        members[0]["weight"] = 2
    elif case == "nested":
        members.append({"method": "ensemble"})
    elif case == "zero_shot_with_few_shot":
        members = [{"method": "eszsl", "params": {"gamma": 1.0}}, {"method": "protonet"}]
    config = write_config(folder, members, **learner)
    fails(capfd, tmp_path, ["eval", "--method", "ensemble", "--config", config, "--quiet"], *fragments)


def test_ensemble_cli_refusals(capfd, tmp_path):
    fails(capfd, tmp_path, ["train", "--method", "ensemble", "--out", tmp_path / "run"], "is not trained",
          "fewzero eval --method ensemble")
    fails(capfd, tmp_path, ["eval", "--method", "ensemble"], "needs --config")


@pytest.mark.parametrize("combine", ["mean_prob", "stacking"])
def test_eval_ensemble_end_to_end(capfd, tmp_path, tiny_omniglot, tmp_path_factory, combine):
    folder = tmp_path_factory.mktemp("e2e")
    tiny_checkpoint = save_checkpoint(folder / "protonet.pt", _untrained("protonet"))
    members = [{"method": "protonet"}, {"method": "protonet", "checkpoint": str(tiny_checkpoint)},
               {"method": "simpleshot", "settings": {"normalisation": "cl2n"}}]
    config = write_config(folder, members, combine=combine)
    records = folder / "report.json"
    rc = main(["eval", "--method", "ensemble", "--config", str(config), "--data-root", str(tiny_omniglot),
               "--records", str(records), "--quiet"])
    out, err = capfd.readouterr()
    assert rc == 0, err
    assert ("stacking coefficients" if combine == "stacking" else "mean_prob weights: protonet") in out
    assert "pairwise disagreement" in out
    report = json.loads(records.read_text())
    assert list(report["members"]) == ["protonet", "protonet_2", "simpleshot"]
    assert np.array(report["disagreement"]).shape == (3, 3) and report["n_episodes"] == 3 and report["n_way"] == 5


def test_eval_zero_shot_ensemble_end_to_end(capfd, tmp_path, monkeypatch):
    import fewzero.cli.zero_shot as zero_shot

    monkeypatch.setattr(zero_shot, "load_data", lambda *args, **kwargs: linear_problem(seed=4))
    config = tmp_path / "zsl.yaml"
    config.write_text(yaml.safe_dump({"method": "ensemble", "dataset": "cub50", "learner": {
        "combine": "stacking", "members": [{"method": "eszsl", "params": {"gamma": 1.0, "lam": 0.1}},
                                           {"method": "sae", "params": {"lam": 0.05}}]}}))
    rc = main(["eval", "--method", "ensemble", "--config", str(config), "--quiet"])
    out, err = capfd.readouterr()
    assert rc == 0, err
    assert "zero-shot  T1" in out and "members' T1: eszsl" in out and "stacking coefficients" in out
    fails(capfd, tmp_path, ["eval", "--method", "ensemble", "--config", config, "--way", "5"],
          "--way does not apply")


def test_list_shows_the_ensemble_and_its_configs(capfd):
    assert main(["list"]) == 0
    out = capfd.readouterr().out
    few_shot = next(line for line in out.splitlines() if line.startswith("few-shot methods:"))
    assert "ensemble" in few_shot
    assert "ensemble_omniglot_20way" in out and "ensemble_cub50" in out


def test_a_zero_shot_config_hands_its_data_options_to_the_dataset_loader(capfd, tmp_path, monkeypatch):
    """``data:`` of a zero-shot config (a single learner's or an ensemble's) reaches the loader; ``--set data.x``
    wins over it; a ``data`` that is not a mapping is one clear error."""
    import fewzero.cli.zero_shot as zero_shot

    seen = []

    def load(*args, **options):
        seen.append(options)
        return linear_problem(seed=4)
    monkeypatch.setattr(zero_shot, "load_data", load)
    single, ensemble = tmp_path / "single.yaml", tmp_path / "ensemble.yaml"
    single.write_text(yaml.safe_dump({"method": "eszsl", "dataset": "cub50", "data": {"heads": "classes+attributes",
                                                                                      "epochs": 3}}))
    ensemble.write_text(yaml.safe_dump({"method": "ensemble", "dataset": "cub50", "data": {"heads": "classes"},
                                        "learner": {"members": [{"method": "eszsl"}, {"method": "sae"}]}}))
    assert main(["eval", "--method", "eszsl", "--config", str(single), "--set", "data.epochs=5", "--quiet"]) == 0
    assert main(["eval", "--method", "ensemble", "--config", str(ensemble), "--quiet"]) == 0
    assert seen == [{"heads": "classes+attributes", "epochs": 5}, {"heads": "classes"}]
    capfd.readouterr()
    for path, method in ((single, "eszsl"), (ensemble, "ensemble")):
        values = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump({**values, "data": "classes"}))
        fails(capfd, tmp_path, ["eval", "--method", method, "--config", path, "--quiet"], "data must be a mapping")
