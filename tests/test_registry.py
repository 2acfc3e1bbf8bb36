"""The registry holds names; the catalogue says where each built-in lives; constructors are keyword-only."""
import inspect
import subprocess
import sys

import pytest

from fewzero.catalogue import (BUILTIN_BACKBONES, FEW_SHOT_DATASETS, FEW_SHOT_LEARNERS, ZERO_SHOT_LEARNERS,
                               method_kind)
from fewzero.errors import FewzeroError
from fewzero.registry import BACKBONES, DATASETS, LEARNERS, ZERO_SHOT, Registry

TABLES = [(LEARNERS, FEW_SHOT_LEARNERS), (ZERO_SHOT, ZERO_SHOT_LEARNERS), (BACKBONES, BUILTIN_BACKBONES),
          (DATASETS, FEW_SHOT_DATASETS)]


@pytest.mark.parametrize("registry,name", [(r, n) for r, table in TABLES for n in table])
def test_every_declared_name_is_registered_by_its_module(registry, name):
    factory = registry.get(name)
    assert factory.__module__ == registry.home(name)


@pytest.mark.parametrize("registry,name", [(r, n) for r, table in TABLES[:3] for n in table])
def test_hyper_parameters_are_keyword_only_with_defaults(registry, name):
    for parameter in registry.parameters(name).values():
        if parameter.name == "backbone":  # few-shot learners take the network first
            continue
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, f"{name}: {parameter.name} is not keyword-only"
        assert parameter.default is not inspect.Parameter.empty, f"{name}: {parameter.name} has no default"


def test_names_are_listed_without_importing_their_modules():
    code = ("import sys; from fewzero.cli import main; main(['list']); "
            "print(sorted(m for m in sys.modules if m.startswith(('fewzero.learners', 'fewzero.zsl', "
            "'fewzero.backbones', 'fewzero.data.omniglot'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "protonet" in result.stdout and "eszsl" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_registry_rules():
    registry = Registry("thing")
    registry.register("a")(dict)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a")(list)
    registry.declare("b", "fewzero.errors")  # a module that registers nothing
    with pytest.raises(RuntimeError, match="did not"):
        registry.get("b")
    with pytest.raises(FewzeroError, match=r"unknown thing 'c': choose one of a, b"):
        registry.get("c")
    assert registry.create("a", x=1, y=None) == {"x": 1}  # None arguments are dropped
    assert method_kind("protonet") == "few-shot" and method_kind("eszsl") == "zero-shot"
    with pytest.raises(FewzeroError, match="few-shot: anil, .*; zero-shot: ale"):
        method_kind("nope")
