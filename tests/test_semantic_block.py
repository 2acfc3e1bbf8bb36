"""SemanticBlock: a learner on one block of concatenated semantics scores as it does on that block alone."""
from __future__ import annotations

import math

import pytest
import torch
from zsl_synthetic import linear_problem

from fewzero.errors import FewzeroError
from fewzero.zsl.eszsl import ESZSL
from fewzero.zsl.semantic_block import SemanticBlock

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def both_blocks():
    """The synthetic problem's semantics (C, a) beside an unrelated random block (C, 7), each L2-normalised and
    weighted 1/sqrt(2), as ``attributes+text`` is built."""
    data = linear_problem(seed=0)
    a = torch.nn.functional.normalize(data.semantics, dim=1)
    other = torch.nn.functional.normalize(torch.randn(a.shape[0], 7, generator=torch.Generator().manual_seed(3)), dim=1)
    return data, a, other, torch.cat([a, other], 1) / math.sqrt(2)


@pytest.mark.parametrize("block", ["first", "second"])
def test_a_block_learner_equals_the_learner_on_that_block_alone(block):
    data, a, other, both = both_blocks()
    alone = a if block == "first" else other
    start, stop = (0, a.shape[1]) if block == "first" else (a.shape[1], a.shape[1] + 7)
    seen, unseen = data.seen_classes, data.unseen_classes
    plain = ESZSL(gamma=1.0, lam=1.0).fit(data.train_x, data.train_y, alone[seen])
    wrapped = SemanticBlock(ESZSL(gamma=1.0, lam=1.0), start=start, stop=stop).fit(data.train_x, data.train_y,
                                                                                    both[seen])
    expected = plain(data.test_unseen_x, alone[unseen])
    assert torch.allclose(wrapped(data.test_unseen_x, both[unseen]), expected, rtol=1e-4, atol=1e-5)
    # and it reads nothing outside its block: changing the other block changes no score
    shuffled = both.clone()
    keep = slice(start, stop)
    rest = torch.ones(both.shape[1], dtype=torch.bool)
    rest[keep] = False
    shuffled[:, rest] = shuffled[torch.randperm(both.shape[0], generator=torch.Generator().manual_seed(1))][:, rest]
    assert torch.equal(wrapped(data.test_unseen_x, shuffled[unseen]), wrapped(data.test_unseen_x, both[unseen]))


def test_a_block_outside_the_semantics_or_a_bad_block_is_a_one_line_error():
    data, a, _, both = both_blocks()
    with pytest.raises(FewzeroError, match="columns"):
        SemanticBlock(ESZSL(), start=0, stop=both.shape[1] + 1).fit(data.train_x, data.train_y,
                                                                    both[data.seen_classes])
    with pytest.raises(FewzeroError, match="start < stop"):
        SemanticBlock(ESZSL(), start=5, stop=5)
    with pytest.raises(FewzeroError, match="zero-shot learner"):
        SemanticBlock(torch.nn.Linear(2, 2), start=0, stop=2)


def test_an_ensemble_config_member_with_semantics_reads_its_block_and_gets_its_graph_built_on_it():
    from fewzero.data.zero_shot import ZeroShotData
    from fewzero.ensemble_setup import zero_shot_ensemble
    from fewzero.zsl.class_graph import build_class_graph

    data, a, other, both = both_blocks()
    fields = ("seen_classes", "unseen_classes", "train_x", "train_y", "test_seen_x", "test_seen_y", "test_unseen_x",
              "test_unseen_y", "val_classes", "class_names")
    blocks = {"attributes": [0, a.shape[1]], "text": [a.shape[1], a.shape[1] + 7]}
    two = ZeroShotData(**{k: getattr(data, k) for k in fields}, semantics=both,
                       info={**data.info, "semantic_blocks": blocks})
    values = {"method": "ensemble", "learner": {"members": [
        {"method": "eszsl"}, {"method": "eszsl", "semantics": "text"},
        {"method": "gcnzsl", "semantics": "text", "params": {"graph": {"taxonomy": False, "knn": 2}, "epochs": 2}}]}}
    ensemble = zero_shot_ensemble(values, data=two)
    plain, text, graph = ensemble.members
    assert isinstance(plain, ESZSL) and isinstance(text, SemanticBlock)
    assert (text.start, text.stop) == (a.shape[1], a.shape[1] + 7)
    expected = build_class_graph(two.class_names, other, taxonomy=False, knn=2)
    assert torch.allclose(graph.learner.graph.features, expected.features, atol=1e-6)
    assert torch.equal(graph.learner.graph.edges, expected.edges)
    alone = ZeroShotData(**{k: getattr(data, k) for k in fields}, semantics=a,
                         info={**data.info, "semantic_blocks": {"attributes": [0, a.shape[1]]}})
    with pytest.raises(FewzeroError, match="reads 'text' semantics but the data holds attributes"):
        zero_shot_ensemble(values, data=alone)
    same = {"method": "ensemble", "learner": {"members": [{"method": "eszsl", "semantics": "attributes"}]}}
    assert isinstance(zero_shot_ensemble(same, data=alone).members[0], ESZSL)  # the whole matrix: no block


def test_fewzero_eval_runs_a_config_whose_members_read_different_semantics(capfd, tmp_path, monkeypatch):
    import yaml

    import fewzero.cli.zero_shot as zero_shot
    from fewzero.cli import main
    from fewzero.data.zero_shot import ZeroShotData

    data, a, _, both = both_blocks()
    fields = ("seen_classes", "unseen_classes", "train_x", "train_y", "test_seen_x", "test_seen_y", "test_unseen_x",
              "test_unseen_y", "val_classes", "class_names")
    blocks = {"attributes": [0, a.shape[1]], "text": [a.shape[1], a.shape[1] + 7]}
    asked = []

    def load(dataset, semantics, *args, **kwargs):
        asked.append(semantics)
        return ZeroShotData(**{k: getattr(data, k) for k in fields}, semantics=both,
                            info={**data.info, "semantic_blocks": blocks if semantics == "attributes+text" else
                                  {"attributes": [0, both.shape[1]]}})
    monkeypatch.setattr(zero_shot, "load_data", load)
    config = tmp_path / "both.yaml"
    members = [{"method": "eszsl", "semantics": "attributes"}, {"method": "eszsl", "semantics": "text"}]
    config.write_text(yaml.safe_dump({"method": "ensemble", "dataset": "cub50", "semantics": "attributes+text",
                                      "learner": {"names": ["eszsl", "eszsl@text"], "members": members}}))
    assert main(["eval", "--method", "ensemble", "--config", str(config), "--quiet"]) == 0
    out, err = capfd.readouterr()
    assert asked == ["attributes+text"] and "members' T1: eszsl" in out and "eszsl@text" in out, err
    assert main(["eval", "--method", "ensemble", "--config", str(config), "--semantics", "attributes", "--quiet"]) == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith("fewzero: error: ") and "reads 'text' semantics" in err and len(err.splitlines()) == 1
