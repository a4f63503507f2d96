"""Modules imported on first use: a provider's protocol code costs nothing until it serves (edge.md §1)."""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """Stands for a module; the first attribute read imports it, later reads go straight to it."""

    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str):
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)


def module(name: str) -> LazyModule:
    """`gem = lazy.module("clewdr_lite.protocol.gemini")` instead of an import at the top."""
    return LazyModule(name)
