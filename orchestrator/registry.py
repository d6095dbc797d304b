"""Registries by name whose entries are classes, or ``"package.module:Class"`` strings imported on first use.

Cachers and executors are both kept this way, so naming one never imports its dependencies
(torch, pyarrow, ray) until a run uses it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar, cast

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes deriving from ``base`` by name; ``unknown(name, names)`` makes the error for a missing one."""

    def __init__(self, base: type, entries: Mapping[str, type[T] | str],
                 unknown: Callable[[str, list[str]], Exception]) -> None:
        self.base = base
        self._entries: dict[str, type[T] | str] = dict(entries)
        self._unknown = unknown

    def register(self, entry: type[T] | str, name: str | None) -> str:
        """Add ``entry`` under ``name`` (a class's own ``name`` attribute by default); returns the name."""
        if isinstance(entry, str):
            if not name or ":" not in entry:
                raise ValueError(f"a lazy {self.base.__name__} needs name= and a 'package.module:Class' path")
        elif not (isinstance(entry, type) and issubclass(entry, self.base)):
            raise TypeError(f"{entry!r} is not a {self.base.__name__} subclass")
        key = str(name or getattr(entry, "name", ""))
        if not key:
            raise ValueError(f"{entry!r} has no name")
        self._entries[key] = entry
        return key

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def lazy_paths(self) -> dict[str, str]:
        """The entries still written as ``"package.module:Class"`` (for tests that import each)."""
        return {name: entry for name, entry in self._entries.items() if isinstance(entry, str)}

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``, imported now if it was given as a string."""
        entry = self._entries.get(name)
        if entry is None:
            raise self._unknown(name, self.names())
        if isinstance(entry, str):
            module_name, _, attr = entry.partition(":")
            loaded = getattr(importlib.import_module(module_name), attr)
            if not (isinstance(loaded, type) and issubclass(loaded, self.base)):
                raise TypeError(f"{name!r} points at {loaded!r}, which is not a {self.base.__name__} subclass")
            entry = cast("type[T]", loaded)
            self._entries[name] = entry
        return entry
