"""The layers of the house (README "Architecture"): imports only point down, and the import graph has no cycle.

Every ``import`` statement in the package counts, also those inside functions (a lazy import is still a
dependency). The graph is read from the source with ``ast``, so the test stays true as files are added.
"""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fewzero"

# lowest first; a module may import from its own layer or any layer below it
LAYERS = [
    ("errors", "atomic", "paths", "registry", "worker_exit", "distributed", "precision"),
    ("data", "backbones"),
    ("episode", "sampling"),
    ("learners", "zsl", "transfer", "adapt", "multitask", "ensemble"),
    ("evaluate", "evaluate_zsl", "evaluate_adapt"),
    ("config", "config_checks", "checkpoint", "pretrained", "runlog", "run_folder", "plot", "adapt_plots"),
    ("run_setup", "train", "pretrain", "tune", "ensemble_setup", "adapt_setup", "adapt_runner"),
    ("cli", "catalogue", "__init__", "__main__"),
]
LAYER_OF = {name: depth for depth, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def resolve(name: str) -> str | None:
    """The fewzero module (file) an imported dotted name refers to, or None outside the package."""
    if name != "fewzero" and not name.startswith("fewzero."):
        return None
    parts = name.split(".")
    while parts:
        base = PACKAGE.parent.joinpath(*parts)
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return None


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            target = resolve(name)
            if target is not None:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    edges = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        # `from fewzero.learners.base import X` also names the package fewzero.learners: keep the deepest module
        targets = imports_of(path)
        edges[name] = {t for t in targets if t != name and not any(o.startswith(t + ".") for o in targets)}
    return edges


def layer(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    assert key in LAYER_OF, f"{module} is in no layer: add {key!r} to LAYERS here and to README's Architecture"
    return LAYER_OF[key]


def test_every_module_has_a_layer():
    for module in graph():
        layer(module)


def test_no_module_imports_from_a_higher_layer():
    upward = [f"{a} -> {b}" for a, targets in graph().items() for b in targets if layer(b) > layer(a)]
    assert not upward, "imports that point up:\n" + "\n".join(sorted(upward))


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_checks_catch_an_upward_import_and_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer("fewzero.cli.evaluation") > layer("fewzero.train") > layer("fewzero.learners.protonet")
    with pytest.raises(AssertionError, match="in no layer"):
        layer("fewzero.somewhere_new")


def test_a_protonet_eval_imports_no_zero_shot_module(data_root):
    code = ("import sys, json; from fewzero.cli import main; "
            "rc = main(['eval', '--method', 'protonet', '--episodes', '3', '--quiet']); "
            "print(json.dumps([rc, sorted(m for m in sys.modules if m.startswith('fewzero'))]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    rc, modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert rc == 0, result.stderr
    assert "fewzero.learners.protonet" in modules and "fewzero.evaluate" in modules
    zero_shot = [m for m in modules if m.startswith("fewzero.zsl") or m in ("fewzero.evaluate_zsl",
                                                                             "fewzero.cli.zero_shot")]
    assert zero_shot == []
