"""A class graph named in a config: ``graph: {taxonomy: true, knn: 0}`` among a gcnzsl member's or run's settings.

A learner sees features and semantics only, not class names, so a config cannot hand it a ``ClassGraph``; it names
how to build one (``build_class_graph``'s options), and whoever loads the data builds it::

    args = resolve_graph({"propagation": "dgp", "graph": {"taxonomy": True, "knn": 0}}, data)
    learner = ZERO_SHOT.create("gcnzsl", **args)    # args["graph"] is now the ClassGraph of data's classes
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fewzero.errors import FewzeroError
from fewzero.zsl.class_graph import ClassGraph, build_class_graph

GRAPH_OPTIONS = ("taxonomy", "knn", "edge_list")
EXAMPLE = "graph: {taxonomy: true, knn: 0}"


def resolve_graph(settings: Mapping[str, Any], data, where: str = "") -> dict[str, Any]:
    """``settings`` with a ``graph`` mapping replaced by the ``ClassGraph`` it describes, built on ``data``'s class
    names and semantics (a ``ZeroShotData``); settings without one, or with a ``ClassGraph``, come back unchanged."""
    spec = settings.get("graph")
    if spec is None or isinstance(spec, ClassGraph):
        return dict(settings)
    if not isinstance(spec, Mapping):
        raise FewzeroError(f"graph{where} is {spec!r}: give a mapping of {', '.join(GRAPH_OPTIONS)} ({EXAMPLE})")
    unknown = sorted(set(spec) - set(GRAPH_OPTIONS))
    if unknown:
        raise FewzeroError(f"graph{where} has no option {unknown[0]!r}: use {', '.join(GRAPH_OPTIONS)} ({EXAMPLE})")
    return {**settings, "graph": build_class_graph(data.class_names, data.semantics, **spec)}
