"""The class graph of knowledge-graph zero-shot learners (``gcnzsl``), built offline from class names and semantics.

    graph = build_class_graph(data.class_names, data.semantics, taxonomy=True, knn=5)
    graph.statistics()    # {"nodes": 61, "class_nodes": 50, "parent_nodes": 11, "edges": ..., ...}
    GCNZSL(graph=graph)

Nodes are the classes (in the given order) followed by extra parent / concept nodes. An edge ``(i, j)`` with
``j >= n_classes`` says that ``j`` is a parent of ``i`` (taxonomy and user hierarchies); every other edge joins
two classes and is symmetric. Only names and class semantics are read, never images or test items.
"""
from __future__ import annotations

import csv
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from fewzero.data.semantics import readable_name
from fewzero.errors import FewzeroError

SOURCES = ("taxonomy", "knn-attributes", "knn-text", "user")


@dataclass
class ClassGraph:
    """A graph over classes and concept nodes.

    Attributes:
        names: n_nodes names, the ``n_classes`` classes first, then the parent / concept nodes.
        features: (n_nodes, a) node semantics; a parent's row is the mean of the rows of the classes beneath it.
        edges: (E, 2) long, each undirected edge once; ``(child, parent)`` when the second end is not a class.
        sources: E labels saying where each edge came from (``taxonomy``, ``knn-<semantics>``, ``user``).
        n_classes: how many of the first nodes are classes.
    """

    names: list[str]
    features: torch.Tensor
    edges: torch.Tensor
    sources: list[str]
    n_classes: int

    @property
    def n_nodes(self) -> int:
        return len(self.names)

    def adjacency(self, kind: str = "sym") -> torch.Tensor:
        """Dense normalised adjacency with self-loops, (n_nodes, n_nodes): ``sym`` D^-1/2 (A+I) D^-1/2, ``row``
        D^-1 (A+I)."""
        if kind not in ("sym", "row"):
            raise FewzeroError(f"unknown adjacency kind {kind!r}: choose sym or row")
        return normalized_adjacency(undirected(self.edges, self.n_nodes), kind)

    def directed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(up, down) 0/1 (n_nodes, n_nodes): ``up[i, j]`` when j is i's parent or a symmetric neighbour of i;
        ``down`` is its transpose. Without parent nodes both equal the undirected adjacency."""
        up = torch.zeros(self.n_nodes, self.n_nodes)
        if len(self.edges):
            i, j = self.edges[:, 0], self.edges[:, 1]
            up[i, j] = 1.0
            symmetric = j < self.n_classes
            up[j[symmetric], i[symmetric]] = 1.0
        return up, up.T.contiguous()

    def statistics(self) -> dict:
        """Counts for a benchmark table: nodes, class / parent nodes, edges (total and per source), mean degree,
        connected components."""
        by_source = {s: self.sources.count(s) for s in sorted(set(self.sources))}
        return {"nodes": self.n_nodes, "class_nodes": self.n_classes, "parent_nodes": self.n_nodes - self.n_classes,
                "edges": len(self.edges), "edges_by_source": by_source,
                "mean_degree": 2.0 * len(self.edges) / self.n_nodes, "components": components(self.edges, self.n_nodes)}


def undirected(edges: torch.Tensor, n: int) -> torch.Tensor:
    """0/1 symmetric (n, n) adjacency of (E, 2) edges, no self-loops."""
    a = torch.zeros(n, n)
    if len(edges):
        a[edges[:, 0], edges[:, 1]] = 1.0
        a[edges[:, 1], edges[:, 0]] = 1.0
    return a


def normalized_adjacency(adjacency: torch.Tensor, kind: str = "sym") -> torch.Tensor:
    """A 0/1 (n, n) adjacency with self-loops added, normalised: ``sym`` D^-1/2 (A+I) D^-1/2, ``row`` D^-1 (A+I)."""
    a = adjacency + torch.eye(adjacency.shape[0], device=adjacency.device)
    degree = a.sum(1)
    if kind == "row":
        return a / degree[:, None]
    scale = degree.rsqrt()
    return scale[:, None] * a * scale[None, :]


def components(edges: torch.Tensor, n: int) -> int:
    """Number of connected components (union-find)."""
    root = list(range(n))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for i, j in edges.tolist():
        root[find(i)] = find(j)
    return len({find(i) for i in range(n)})


def hop_distances(adjacency: torch.Tensor, max_hops: int) -> torch.Tensor:
    """Shortest-path hop counts along a 0/1 (n, n) (possibly directed) adjacency: (n, n), 0 on the diagonal,
    inf beyond ``max_hops`` or unreachable."""
    n = adjacency.shape[0]
    distance = torch.full((n, n), float("inf"))
    reached = torch.eye(n, dtype=torch.bool)
    distance[reached] = 0.0
    frontier = reached.float()
    for hop in range(1, max_hops + 1):
        frontier = ((frontier @ adjacency) > 0) & ~reached
        if not frontier.any():
            break
        distance[frontier] = float(hop)
        reached |= frontier
        frontier = frontier.float()
    return distance


def taxonomy_edges(class_names: Sequence[str]) -> tuple[list[str], list[tuple[int, int]]]:
    """The taxonomy implied by CUB-style names: (parent names, (class index, parent index) pairs).

    Heuristic: the last word of a class's readable name is its group (``001.Black_footed_Albatross`` ->
    ``Albatross``, ``034.Gray_crowned_Rosy_Finch`` -> ``Finch``, ``grizzly+bear`` -> ``bear``); every group of
    two or more classes gets a parent node, numbered from 0 in order of first appearance, and each of its classes
    is linked to it. Single-word, one-member groups (``017.Cardinal``) get no parent. It is only a heuristic:
    ``Chuck_will_Widow`` lands in ``Widow``, and ``Goldfinch`` is not a ``Finch``.
    """
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(class_names):
        words = readable_name(name).split()
        if words:
            groups.setdefault(words[-1], []).append(index)
    taken = {_key(name) for name in class_names}
    parents, pairs = [], []
    for group, members in groups.items():
        if len(members) >= 2:
            parents.append(group if _key(group) not in taken else f"{group} (group)")
            pairs += [(member, len(parents) - 1) for member in members]
    return parents, pairs


def knn_edges(features: torch.Tensor, k: int) -> torch.Tensor:
    """Each row linked to its k most cosine-similar other rows; (E, 2) long, symmetric edges once (i < j), no
    self-loops, so every node has at least min(k, n - 1) neighbours. Ties go to the lower index."""
    n = features.shape[0]
    k = min(int(k), n - 1)
    if k < 1:
        return torch.zeros(0, 2, dtype=torch.long)
    unit = F.normalize(features.double(), dim=1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-float("inf"))
    neighbours = similarity.topk(k, dim=1).indices
    pairs = torch.stack([torch.arange(n).repeat_interleave(k), neighbours.flatten()], 1)
    return torch.unique(pairs.sort(1).values, dim=0)


def load_edge_list(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Name pairs from a two-column TSV or CSV (``#`` comments and blank lines skipped); one-line errors."""
    if not os.path.isfile(path):
        raise FewzeroError(f"edge list {path} does not exist: give a two-column TSV or CSV of names")
    pairs = []
    with open(path, newline="") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            row = next(csv.reader([line.rstrip("\r\n")], delimiter="\t" if "\t" in line else ","))
            row = [cell.strip() for cell in row]
            if len(row) != 2 or not all(row):
                raise FewzeroError(f"{path} line {number} has {len([c for c in row if c])} names, expected two "
                                   f"(child, parent or class, class) separated by a tab or a comma: {line.strip()!r}")
            pairs.append((row[0], row[1]))
    return pairs


def build_class_graph(class_names: Sequence[str], semantics, *, taxonomy: bool = True, knn: int = 5,
                      extra_semantics: Mapping[str, torch.Tensor] | None = None,
                      edge_list: Sequence[tuple[str, str]] | str | os.PathLike | None = None) -> ClassGraph:
    """A class graph from names and class semantics only.

    Args:
        class_names: n_classes names (e.g. CUB folders ``"001.Black_footed_Albatross"``).
        semantics: (n_classes, a) class semantics; the node features, and the ``knn-attributes`` edges.
        taxonomy: add ``taxonomy_edges`` (parent node per last-word group).
        knn: k of the ``knn-attributes`` edges (``knn_edges`` on ``semantics``); 0 for none.
        extra_semantics: name -> (n_classes, b) matrix (e.g. ``{"text": ...}``), each adding ``knn-<name>`` edges.
        edge_list: the user's (name, name) pairs, or a path for ``load_edge_list``. A name is a class when it
            equals a class name or its readable name (case-insensitive); other names become concept nodes. An
            edge between a class and a concept makes the concept the class's parent; between two concepts it
            reads (child, parent). A concept's features are the mean of the classes beneath it. To use only the
            user's edges, pass ``taxonomy=False, knn=0``.

    An edge joining two nodes again (from another source) is kept once, with its first source in the order
    taxonomy, knn-attributes, knn-<extra>, user.
    """
    names = [str(name) for name in class_names]
    semantics = torch.as_tensor(semantics).float()
    if semantics.ndim != 2 or semantics.shape[0] != len(names):
        raise FewzeroError(f"semantics has shape {tuple(semantics.shape)} but there are {len(names)} classes: "
                           f"give one row per class")
    if not torch.isfinite(semantics).all():
        raise FewzeroError("semantics contain NaN or inf: fix those classes before building the graph")
    if int(knn) < 0:
        raise FewzeroError(f"knn is {knn}: use 0 (no k-NN edges) or a positive k")
    nodes = {_key(name): index for index, name in enumerate(names)}
    if len(nodes) != len(names):
        raise FewzeroError("two classes have the same readable name: give every class a distinct name")
    edges: dict[tuple[int, int], str] = {}
    all_names = list(names)

    def node(name: str) -> int:
        key = _key(name)
        if key not in nodes:
            nodes[key] = len(all_names)
            all_names.append(name)
        return nodes[key]

    def add(i: int, j: int, source: str) -> None:
        pair = (i, j) if j >= len(names) else (min(i, j), max(i, j))
        if (pair[1], pair[0]) in edges and pair[0] >= len(names):
            raise FewzeroError(f"the edges make {all_names[pair[0]]!r} and {all_names[pair[1]]!r} parents of each "
                               f"other: keep one direction (child, parent)")
        edges.setdefault(pair, source)

    if taxonomy:
        parents, pairs = taxonomy_edges(names)
        for child, parent in pairs:
            add(child, node(parents[parent]), "taxonomy")
    knn_sources = {"attributes": semantics, **(extra_semantics or {})}
    for label, matrix in knn_sources.items() if knn else ():
        matrix = torch.as_tensor(matrix).float()
        if matrix.ndim != 2 or matrix.shape[0] != len(names):
            raise FewzeroError(f"extra semantics {label!r} has shape {tuple(matrix.shape)}: give one row per class")
        for i, j in knn_edges(matrix, knn).tolist():
            add(i, j, f"knn-{label}")
    if isinstance(edge_list, (str, os.PathLike)):
        edge_list = load_edge_list(edge_list)
    for number, pair in enumerate(edge_list or (), 1):
        if len(pair) != 2:
            raise FewzeroError(f"user edge {number} is {pair!r}: give pairs of two names")
        a, b = (str(name).strip() for name in pair)
        for name in (a, b):
            if _key(name) not in nodes and re.match(r"^\d+\.", name):
                raise FewzeroError(f"user edge {number} names {name!r}, which looks like a class but is not one of "
                                   f"the {len(names)} classes: fix the name or drop the edge")
        i, j = node(a), node(b)
        if i == j:
            raise FewzeroError(f"user edge {number} links {a!r} to itself: drop self-loops from the edge list")
        if i >= len(names) > j:  # (concept, class): the concept is the parent whichever way round
            i, j = j, i
        add(i, j, "user")
    pairs = sorted(edges)
    edge_tensor = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
    features = torch.cat([semantics, _concept_features(edge_tensor, semantics, all_names)])
    return ClassGraph(names=all_names, features=features, edges=edge_tensor, sources=[edges[p] for p in pairs],
                      n_classes=len(names))


def _concept_features(edges: torch.Tensor, semantics: torch.Tensor, names: list[str]) -> torch.Tensor:
    """(n_concepts, a): each concept node's mean over the classes beneath it; a parent cycle or a concept with
    no class beneath it is an error."""
    n_classes, n = semantics.shape[0], len(names)
    hierarchy = torch.zeros(n, n)
    parent_edges = edges[edges[:, 1] >= n_classes] if len(edges) else edges
    if len(parent_edges):
        hierarchy[parent_edges[:, 1], parent_edges[:, 0]] = 1.0  # parent -> child
    beneath = hop_distances(hierarchy, n).isfinite()  # (node, descendant or itself)
    cycle = (beneath & beneath.T).float() - torch.eye(n)
    if cycle.any():
        i, j = cycle.nonzero()[0].tolist()
        raise FewzeroError(f"the edges make a parent cycle through {names[i]!r} and {names[j]!r}: a concept cannot "
                           f"be beneath itself; write edges as (child, parent) and remove the loop")
    below = beneath[n_classes:, :n_classes].float()
    empty = (below.sum(1) == 0).nonzero().flatten()
    if len(empty):
        raise FewzeroError(f"concept node {names[n_classes + int(empty[0])]!r} has no class beneath it: link it "
                           f"(child, parent) to at least one class, or fix a misspelt class name")
    return (below @ semantics) / below.sum(1, keepdim=True)


def _key(name: str) -> str:
    return readable_name(name).lower()
