"""Name registries: one place maps command-line names to learners, backbones and datasets.

    @LEARNERS.register("protonet")
    class ProtoNet(Learner): ...

    LEARNERS.create("protonet", backbone=net, distance=None)   # None arguments are dropped
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fewzero.errors import FewzeroError


class Registry:
    """A name -> factory table. Registering a name twice is an error."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable:
        def decorator(factory: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            return factory
        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        _load_builtin()
        if name not in self._entries:
            raise FewzeroError(f"unknown {self.kind} {name!r}: choose one of {', '.join(self.available())}")
        return self._entries[name]

    def create(self, name: str, **kwargs: Any) -> Any:
        """Build ``name`` with ``kwargs``, dropping ``None`` values so the factory's own defaults apply."""
        return self.get(name)(**{k: v for k, v in kwargs.items() if v is not None})

    def available(self) -> list[str]:
        _load_builtin()
        return sorted(self._entries)

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """The keyword parameters of a registered factory (what a config may set)."""
        return dict(inspect.signature(self.get(name)).parameters)

    def __contains__(self, name: str) -> bool:
        _load_builtin()
        return name in self._entries


LEARNERS = Registry("method")
ZERO_SHOT = Registry("zero-shot method")
BACKBONES = Registry("backbone")
DATASETS = Registry("dataset")

_loaded = False


def _load_builtin() -> None:
    """Import the modules that register the built-in entries (explicitly, once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import fewzero.backbones  # noqa: F401
    import fewzero.data  # noqa: F401
    import fewzero.learners  # noqa: F401
    import fewzero.zsl.learners  # noqa: F401
