"""The class graph builder and the knowledge-graph zero-shot learner (GCNZ, with DGP as an option)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from torch.nn import functional as F
from zsl_synthetic import linear_problem

from fewzero.data.semantics import cub_attributes, cub_class_folders
from fewzero.errors import FewzeroError
from fewzero.registry import ZERO_SHOT
from fewzero.zsl.class_graph import (ClassGraph, build_class_graph, knn_edges, load_edge_list, taxonomy_edges,
                                     undirected)
from fewzero.zsl.gcnzsl import GCNZSL

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = {"hidden_dim": 64, "epochs": 150, "progress": False}


@pytest.fixture(scope="module")
def cub50():
    names = cub_class_folders()[:50]
    return names, cub_attributes(names)


def neighbour_problem(seed: int = 0, n_seen: int = 12, n_unseen: int = 4, dim: int = 16, per_class: int = 20):
    """Seen classes with random unit weights w_c; unseen class u's weights are the mean of those of 3 seen
    neighbours; an item is w_c + noise. Semantics are random, so only the graph tells an unseen class apart."""
    g = torch.Generator().manual_seed(seed)
    w = F.normalize(torch.randn(n_seen, dim, generator=g), dim=1)
    neighbours = [torch.randperm(n_seen, generator=g)[:3] for _ in range(n_unseen)]
    w_unseen = torch.stack([F.normalize(w[n].mean(0), dim=0) for n in neighbours])
    semantics = torch.randn(n_seen + n_unseen, 8, generator=g)

    def items(weights):
        y = torch.arange(len(weights)).repeat_interleave(per_class)
        return weights[y] + 0.3 * torch.randn(len(y), dim, generator=g), y

    (x, y), (unseen_x, unseen_y) = items(w), items(w_unseen)
    ring = [(c, (c + 1) % n_seen) for c in range(n_seen)]
    links = [(int(c), n_seen + u) for u, n in enumerate(neighbours) for c in n]
    return x, y, semantics, unseen_x, unseen_y, neighbours, ring, links


def graph_of(semantics: torch.Tensor, edges: list[tuple[int, int]]) -> ClassGraph:
    return ClassGraph(names=[f"class{i}" for i in range(len(semantics))], features=semantics,
                      edges=torch.tensor(edges).reshape(-1, 2), sources=["user"] * len(edges),
                      n_classes=len(semantics))


# --- the learner --------------------------------------------------------------------------------------------------

def test_gcn_propagates_seen_weights_to_unseen_neighbours_and_needs_the_edges():
    x, y, semantics, unseen_x, unseen_y, neighbours, ring, links = neighbour_problem()
    n_seen = len(ring)
    results = {}
    for name, edges in (("graph", ring + links), ("no unseen edges", ring)):
        model = GCNZSL(graph=graph_of(semantics, edges), center_features=False, **FAST)
        model.fit(x, y, semantics[:n_seen])
        weights = model.class_weights(semantics[n_seen:])
        expected = torch.stack([F.normalize(model.targets_[n].mean(0), dim=0) for n in neighbours])
        accuracy = float((model.predict(unseen_x, semantics[n_seen:]) == unseen_y).float().mean())
        results[name] = (float((weights * expected).sum(1).mean()), accuracy)
    (cosine, accuracy), (cosine_without, accuracy_without) = results["graph"], results["no unseen edges"]
    # chance is 0.25 for 4 unseen classes; without their edges the unseen classes are near chance
    assert cosine >= 0.55 and accuracy >= 0.55, results
    assert cosine >= cosine_without + 0.25 and accuracy >= accuracy_without + 0.25, results


def test_dgp_operators_follow_the_hop_distances_of_a_hand_drawn_tree():
    classes = ["c1", "c2", "c3", "c4"]
    graph = build_class_graph(classes, torch.eye(4), taxonomy=False, knn=0, edge_list=[
        ("c1", "A"), ("c2", "A"), ("B", "c3"), ("c4", "B"), ("A", "root"), ("B", "root")])
    assert graph.names == classes + ["A", "B", "root"]
    up, down = graph.directed()
    assert torch.equal(up[0], torch.tensor([0., 0, 0, 0, 1, 0, 0])) and torch.equal(down, up.T)
    descendants, ancestors = GCNZSL(propagation="dgp", dgp_hops=3)._operators(up)
    assert len(descendants) == 3 and len(ancestors) == 3  # hops 0, 1, 2 (nothing is 3 hops away)
    assert torch.equal(descendants[0], torch.eye(7)) and torch.equal(ancestors[0], torch.eye(7))
    assert torch.allclose(descendants[1][4], torch.tensor([0.5, 0.5, 0, 0, 0, 0, 0]))  # A's children
    assert torch.allclose(descendants[2][6], torch.tensor([0.25, 0.25, 0.25, 0.25, 0, 0, 0]))  # root's grandchildren
    assert descendants[1][:4].abs().sum() == 0  # classes are leaves
    assert torch.equal(ancestors[1][2], torch.tensor([0., 0, 0, 0, 0, 1, 0]))  # c3 -> B
    assert torch.equal(ancestors[2][2], torch.tensor([0., 0, 0, 0, 0, 0, 1]))  # c3 -> root


@pytest.mark.parametrize("propagation", ["gcn", "dgp"])
def test_a_graph_built_from_raw_semantics_matches_the_normalised_rows(propagation):
    data = linear_problem(seed=0, n_seen=10, n_unseen=4, per_class=10)
    raw = 7.3 * data.semantics  # another scale: matched after the learner's normalisation
    seen, unseen = data.seen_classes, data.unseen_classes
    graph = build_class_graph(data.class_names, F.normalize(data.semantics, dim=1), taxonomy=False, knn=3)
    scores = []
    for semantics in (raw, F.normalize(data.semantics, dim=1)):
        scaled = ClassGraph(graph.names, semantics, graph.edges, graph.sources, graph.n_classes)
        model = GCNZSL(graph=scaled, propagation=propagation, **FAST)
        scores.append(model.fit(data.train_x, data.train_y, semantics[seen])(data.test_unseen_x, semantics[unseen]))
    assert scores[0].shape == (len(data.test_unseen_x), len(unseen)) and torch.isfinite(scores[0]).all()
    assert torch.allclose(scores[0], scores[1], atol=1e-3)
    other = raw[unseen].clone()
    other[2, 0] += 50.0
    with pytest.raises(FewzeroError, match="semantics row 2 matches no node of the graph") as info:
        model(data.test_unseen_x, other)
    assert "\n" not in str(info.value)
    moved = raw[seen].clone()
    moved[0, 0] += 50.0
    with pytest.raises(FewzeroError, match="training class row 0 matches no node"):
        GCNZSL(graph=graph, **FAST).fit(data.train_x, data.train_y, moved)


def test_scores_of_an_item_do_not_depend_on_the_other_items():
    data = linear_problem(seed=1, n_seen=10, n_unseen=4, per_class=10)
    model = GCNZSL(**FAST).fit(data.train_x, data.train_y, data.semantics[data.seen_classes])
    unseen = data.semantics[data.unseen_classes]
    clean = model(data.test_unseen_x, unseen)
    poisoned_x = 1e4 * torch.randn_like(data.test_unseen_x)
    poisoned_x[::3] = data.test_unseen_x[::3]
    poisoned = model(poisoned_x, unseen)
    assert torch.allclose(poisoned[::3], clean[::3], atol=1e-5)
    assert not torch.allclose(poisoned[1::3], clean[1::3], atol=1e-2)  # the poison does reach its own rows


def test_the_network_is_trained_once_per_semantics_matrix_and_the_cache_is_bounded(monkeypatch):
    data = linear_problem(seed=2, n_seen=8, n_unseen=6, per_class=5)
    model = GCNZSL(**{**FAST, "epochs": 5}).fit(data.train_x, data.train_y, data.semantics[data.seen_classes])
    calls = []
    train = model._train_network
    monkeypatch.setattr(model, "_train_network", lambda *args: calls.append(1) or train(*args))
    unseen = data.semantics[data.unseen_classes]
    first = model(data.test_unseen_x[:10], unseen)
    assert torch.equal(model(data.test_unseen_x[:10], unseen), first) and len(calls) == 1
    for k in range(2, 7):
        model(data.test_unseen_x[:3], unseen[:k])
    assert len(calls) == 6 and len(model._weights) == 4


def test_bad_options_are_one_line_errors():
    cases = {"propagation": ({"propagation": "gat"}, "unknown propagation 'gat'"),
             "knn": ({"knn": -1}, "knn is -1"), "dropout": ({"dropout": 1.0}, "dropout is 1.0"),
             "epochs": ({"epochs": 0}, "epochs is 0"), "lr": ({"lr": 0}, "lr is 0"),
             "graph": ({"graph": [(0, 1)]}, "graph is a list")}
    for options, message in cases.values():
        with pytest.raises(FewzeroError, match=message) as info:
            ZERO_SHOT.create("gcnzsl", **options)
        assert "\n" not in str(info.value)
    with pytest.raises(FewzeroError, match="not fitted"):
        GCNZSL().class_weights(torch.ones(2, 3))


# --- the graph builder -------------------------------------------------------------------------------------------

def test_taxonomy_groups_the_cub_names_by_their_last_word(cub50):
    names, _ = cub50
    parents, pairs = taxonomy_edges(names)
    members = {parent: sorted(names[c][:3] for c, p in pairs if parents[p] == parent) for parent in parents}
    assert members["Albatross"] == ["001", "002", "003"]
    assert members["Auklet"] == ["005", "006", "007", "008"]
    assert members["Finch"] == ["034", "035"] and len(members["Flycatcher"]) == 7
    assert len(parents) == 12 and len(pairs) == 37  # hand count of the groups of two or more in 001-050
    assert "Cardinal" not in parents and "Grebe" not in parents  # one class each in 001-050


def test_knn_edges_are_symmetric_without_self_loops_and_give_every_node_k_neighbours():
    features = torch.randn(30, 6, generator=torch.Generator().manual_seed(0))
    k = 4
    edges = knn_edges(features, k)
    assert (edges[:, 0] < edges[:, 1]).all()  # each undirected edge once, no self-loop
    assert len(torch.unique(edges, dim=0)) == len(edges)
    adjacency = undirected(edges, 30)
    assert (adjacency.sum(1) >= k).all()
    unit = F.normalize(features.double(), dim=1)
    similarity = (unit @ unit.T).fill_diagonal_(-2).numpy()
    for i in range(30):  # oracle: every node's k most similar others are among its neighbours
        assert all(adjacency[i, j] == 1 for j in np.argsort(-similarity[i])[:k])


def test_statistics_match_a_scipy_oracle_and_a_hand_count(cub50):
    names, attributes = cub50
    taxonomy_only = build_class_graph(names, attributes, taxonomy=True, knn=0)
    assert taxonomy_only.statistics()["components"] == 25  # 12 groups + 13 classes without a group
    graph = build_class_graph(names, attributes, taxonomy=True, knn=3)
    stats = graph.statistics()
    adjacency = graph.adjacency() > 0
    n_components, _ = connected_components(csr_matrix(adjacency.numpy()), directed=False)
    assert stats["components"] == n_components
    assert stats["nodes"] == 62 and stats["class_nodes"] == 50 and stats["parent_nodes"] == 12
    assert stats["edges_by_source"] == {"knn-attributes": len(knn_edges(attributes, 3)), "taxonomy": 37}
    assert stats["edges"] == (adjacency.sum().item() - 62) // 2
    assert stats["mean_degree"] == pytest.approx(2 * stats["edges"] / 62)
    albatross = graph.names.index("Albatross")
    assert torch.allclose(graph.features[albatross], attributes[:3].mean(0))
    # the symmetric normalisation, against numpy
    a = adjacency.double().numpy()
    d = a.sum(1)
    np.testing.assert_allclose(graph.adjacency("sym").numpy(), a / np.sqrt(np.outer(d, d)), rtol=1e-5)


def test_a_user_edge_list_can_replace_the_built_in_sources(cub50, tmp_path):
    names, attributes = cub50
    path = tmp_path / "edges.tsv"
    path.write_text("# child\tparent\n001.Black_footed_Albatross\tSeabird\nLaysan Albatross\tSeabird\n\n"
                    "Seabird\tBird\n005.Crested_Auklet,Bird\n")
    pairs = load_edge_list(path)
    assert pairs[-1] == ("005.Crested_Auklet", "Bird") and len(pairs) == 4
    graph = build_class_graph(names, attributes, taxonomy=False, knn=0, edge_list=path)
    assert graph.sources == ["user"] * 4 and graph.names[50:] == ["Seabird", "Bird"]
    assert sorted(map(tuple, graph.edges.tolist())) == [(0, 50), (1, 50), (4, 51), (50, 51)]
    assert torch.allclose(graph.features[50], attributes[:2].mean(0))
    assert torch.allclose(graph.features[51], attributes[[0, 1, 4]].mean(0))  # every class beneath "Bird"
    both = build_class_graph(names, attributes, taxonomy=True, knn=0, edge_list=path)
    assert set(both.sources) == {"taxonomy", "user"}


@pytest.mark.parametrize("edges, message", [
    ([("201.Imaginary_Bird", "Albatross")], "user edge 1 names '201.Imaginary_Bird', which looks like a class"),
    ([("Albatross", "Albatross")], "user edge 1 links 'Albatross' to itself"),
    ([("Seabird", "Bird")], "concept node 'Seabird' has no class beneath it"),
    ([("Albatross", "Seabird"), ("Seabird", "Albatross")], "parents of each other"),
    ([("Albatross", "Seabird"), ("Seabird", "Bird"), ("Bird", "Albatross")], "parent cycle"),
])
def test_contradictory_or_unknown_edge_lists_are_one_line_errors(cub50, edges, message):
    names, attributes = cub50
    with pytest.raises(FewzeroError, match=message) as info:
        build_class_graph(names, attributes, edge_list=edges)
    assert "\n" not in str(info.value)


def test_a_malformed_edge_file_line_is_a_one_line_error(tmp_path):
    path = tmp_path / "edges.csv"
    path.write_text("a,b\nc\n")
    with pytest.raises(FewzeroError, match="line 2 has 1 names, expected two") as info:
        load_edge_list(path)
    assert "\n" not in str(info.value)
    with pytest.raises(FewzeroError, match="does not exist"):
        load_edge_list(tmp_path / "missing.tsv")
