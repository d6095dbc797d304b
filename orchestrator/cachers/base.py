"""The cacher contract and the registry of cachers by name."""

from __future__ import annotations

import functools
import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, Any, ClassVar

from ..errors import UnknownCacherError, did_you_mean

__all__ = ["Cacher", "choose_cacher", "get_cacher", "register_cacher", "registered_cachers", "streams"]


class Cacher(ABC):
    """Saves one kind of object to a path and loads it back.

    Contract:
        * ``name`` is unique in the registry; ``version`` changes whenever the stored
          format changes (it is part of every key that uses the cacher).
        * ``save(obj, path)`` writes ``obj`` to ``path`` (a file, or a folder when
          ``kind == "dir"``); ``path`` does not exist yet. The store hashes and publishes
          it atomically afterwards, so ``save`` need not be atomic.
        * ``load(path)`` returns an object equal to the one saved. It must not modify
          ``path``: stored objects are shared and read-only.
        * ``accepts(obj)`` (optional) says whether the cacher is the natural choice
          for an object when a stage does not name one.
        * ``hands_off(obj)`` (optional) says whether ``load(save(obj))`` is
          indistinguishable from ``obj`` (same type, value and memory layout), so a consumer
          in the same process may receive ``obj`` itself instead of a reload. Default: no.
        * ``write(obj, file)`` and ``read(file)`` (optional, both or neither) do what
          ``save`` and ``load`` do, through an open binary file. A cacher that has them lets
          the store keep an output of at most 4 KiB inside its key record, with no file of
          its own (see :data:`orchestrator.store.inline.INLINE_LIMIT`). They count only when no
          subclass below the one defining them overrides ``save`` or ``load``: a cacher
          that changes ``save`` alone is never streamed through an inherited ``write``.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    extension: ClassVar[str] = ""
    kind: ClassVar[str] = "file"

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        """True when this cacher should be chosen for ``obj`` by default."""
        return False

    @classmethod
    def hands_off(cls, obj: Any) -> bool:
        """True when a reload of ``obj`` would be indistinguishable from ``obj`` itself."""
        return False

    @abstractmethod
    def save(self, obj: Any, path: Path) -> None:
        """Write ``obj`` to ``path``."""

    @abstractmethod
    def load(self, path: Path) -> Any:
        """Read the object stored at ``path``."""

    def write(self, obj: Any, file: IO[bytes]) -> None:
        """Write ``obj`` to a binary file open for writing (optional)."""
        raise NotImplementedError(f"cacher {self.name!r} writes to paths only")

    def read(self, file: IO[bytes]) -> Any:
        """Read an object from a binary file open for reading (optional)."""
        raise NotImplementedError(f"cacher {self.name!r} reads from paths only")


def streams(cacher: Cacher) -> bool:
    """True when ``cacher``'s ``write``/``read`` are real and no subclass overrides ``save``/``load`` past them."""
    return holds(cacher, ("write", "read"), ("save", "load"))


def holds(cacher: Cacher, promises: tuple[str, ...], methods: tuple[str, ...]) -> bool:
    """Whether the optional ``promises`` of ``cacher`` still describe the ``methods`` it uses.

    They do when they are defined below :class:`Cacher` and no class more derived than
    the one defining them overrides one of ``methods``.
    """
    return _holds(type(cacher), promises, methods)


@functools.lru_cache(maxsize=None)
def _holds(cls: type, promises: tuple[str, ...], methods: tuple[str, ...]) -> bool:  # per class: asked per output
    mro = cls.__mro__

    def depth(name: str) -> int:  # how far up the MRO the method used is defined (0: the class itself)
        return next(i for i, k in enumerate(mro) if name in vars(k))

    promised = [depth(name) for name in promises]
    if any(mro[d] is Cacher for d in promised):
        return False
    return min(depth(name) for name in methods) >= max(promised)


_REGISTRY: dict[str, type[Cacher] | str] = {}
_INSTANCES: dict[str, Cacher] = {}
# the order in which cachers are offered an object whose stage names no cacher
_AUTO_ORDER: list[str] = []


def register_cacher(cacher: type[Cacher] | str, name: str | None = None, *, auto: bool = False) -> None:
    """Register a cacher class, or a lazy ``"package.module:Class"`` string.

    Args:
        cacher: A :class:`Cacher` subclass, or where to import it from on first use.
        name: The registry name (default: the class's ``name``; required for lazy strings).
        auto: Offer it objects of stages that name no cacher (checked before the built-ins).
    """
    if isinstance(cacher, str):
        if name is None or ":" not in cacher:
            raise ValueError("a lazy cacher needs name= and a 'package.module:Class' path")
        key = name
    else:
        if not (isinstance(cacher, type) and issubclass(cacher, Cacher)):
            raise TypeError(f"{cacher!r} is not a Cacher subclass")
        key = str(name or getattr(cacher, "name", ""))
        if not key:
            raise ValueError(f"{cacher.__name__} has no name")
    _REGISTRY[key] = cacher
    _INSTANCES.pop(key, None)
    if auto and key not in _AUTO_ORDER:
        _AUTO_ORDER.insert(0, key)


def registered_cachers() -> list[str]:
    """Names of every registered cacher."""
    _ensure_builtins()
    return sorted(_REGISTRY)


def get_cacher(name: str) -> Cacher:
    """Return the cacher registered as ``name``.

    Raises:
        UnknownCacherError: no cacher of that name.
    """
    _ensure_builtins()
    instance = _INSTANCES.get(name)
    if instance is not None:
        return instance
    entry = _REGISTRY.get(name)
    if entry is None:
        raise UnknownCacherError(
            f"unknown cacher {name!r}.{did_you_mean(name, _REGISTRY)} Registered: "
            f"{', '.join(sorted(_REGISTRY))}. Fix: use one of those or register_cacher() yours."
        )
    if isinstance(entry, str):
        module_name, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module_name), attr)
        if not (isinstance(entry, type) and issubclass(entry, Cacher)):
            raise UnknownCacherError(f"cacher {name!r} points at {entry!r}, which is not a Cacher subclass")
    instance = entry()
    _INSTANCES[name] = instance
    return instance


def choose_cacher(obj: Any) -> Cacher:
    """The cacher for an object whose stage names none: the first that accepts it, else pickle."""
    _ensure_builtins()
    for name in _AUTO_ORDER:
        cacher = get_cacher(name)
        if cacher.accepts(obj):
            return cacher
    return get_cacher("pickle")


def _ensure_builtins() -> None:
    if "pickle" not in _REGISTRY:
        from . import builtin

        builtin.register_all()
