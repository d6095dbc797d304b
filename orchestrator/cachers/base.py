"""The cacher contract: what a cacher promises, and whether its optional promises hold."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, Any, ClassVar

__all__ = ["Cacher", "holds", "streams"]


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
