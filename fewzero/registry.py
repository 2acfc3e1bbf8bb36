"""Name registries: one place maps command-line names to learners, backbones and datasets.

A module registers what it defines::

    @LEARNERS.register("protonet")
    class ProtoNet(Learner): ...

    LEARNERS.create("protonet", backbone=net, distance=None)   # None arguments are dropped

The registry holds names only and imports nothing by itself. The built-in names are *declared* by
``fewzero.catalogue`` (name -> module that registers it), so a name can be listed without importing its module,
and its module is imported the first time the name is used: evaluating ProtoNet never imports a zero-shot learner.
Research code may register its own classes with the same decorator.
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from fewzero.errors import FewzeroError


class Registry:
    """A name -> factory table. Registering a name twice is an error."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}
        self._homes: dict[str, str] = {}  # declared name -> module whose import registers it

    def register(self, name: str) -> Callable:
        def decorator(factory: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            return factory
        return decorator

    def declare(self, name: str, module: str) -> None:
        """Say that importing ``module`` registers ``name`` (the catalogue's lazy entries)."""
        if self._homes.get(name, module) != module:
            raise ValueError(f"{self.kind} {name!r} is declared in two modules")
        self._homes[name] = module

    def home(self, name: str) -> str | None:
        """The module declared for ``name`` (None for names registered by user code only)."""
        return self._homes.get(name)

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._entries and name in self._homes:
            importlib.import_module(self._homes[name])
            if name not in self._entries:
                raise RuntimeError(f"{self._homes[name]} was declared to register {self.kind} {name!r} but did not")
        if name not in self._entries:
            raise FewzeroError(f"unknown {self.kind} {name!r}: choose one of {', '.join(self.available())}")
        return self._entries[name]

    def create(self, name: str, **kwargs: Any) -> Any:
        """Build ``name`` with ``kwargs``, dropping ``None`` values so the factory's own defaults apply."""
        return self.get(name)(**{k: v for k, v in kwargs.items() if v is not None})

    def available(self) -> list[str]:
        """Every declared or registered name, without importing anything."""
        return sorted(set(self._entries) | set(self._homes))

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """The keyword parameters of a registered factory (what a config may set)."""
        return dict(inspect.signature(self.get(name)).parameters)

    def __contains__(self, name: str) -> bool:
        return name in self._entries or name in self._homes


LEARNERS = Registry("method")
ZERO_SHOT = Registry("zero-shot method")
BACKBONES = Registry("backbone")
DATASETS = Registry("dataset")
DOMAINS = Registry("domain")  # the domains of unsupervised domain adaptation (fewzero.data.domains)
ADAPTERS = Registry("adaptation method")
