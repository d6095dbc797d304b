"""Hand a stage's outputs to the next stage in the same process without reloading them.

After a task stores its outputs, the in-process executor keeps the objects until the next
task starts. If that task reads one of them, it receives the object itself instead of
loading the stored copy again (for a 500 MiB array, a read of 500 MiB saved). Whatever the
next task does not read is dropped when it starts, so nothing is held longer than before and
peak memory does not grow.

An object is handed over only when doing so cannot change what the consumer sees:

* its cacher says ``load(save(obj))`` is indistinguishable from it (``Cacher.hands_off``:
  plain numpy arrays that own their memory, ``str``, ``bytes``); a JSON round trip turns
  tuples into lists, so such objects are always reloaded. No class below the one that says so
  may override ``save``, ``load``, ``write`` or ``read``: a subclass of the numpy cacher that
  saves float32 does not inherit the promise;
* nothing but the stage's return value refers to it (checked with ``sys.getrefcount``),
  so a consumer that modifies its input in place cannot alter an object that another
  stage, a module-level cache or a later param set still uses;
* it goes to one consumer only (moved, not shared); any other consumer loads the stored copy.
"""

from __future__ import annotations

import sys
from typing import Any

from ..cachers import Cacher
from ..cachers.base import holds

__all__ = ["Handoff"]

class _Probe:
    def count(self, _hash: str, _cacher: object, obj: Any) -> int:
        return sys.getrefcount(obj)


def _sole_owner_count() -> int | None:
    """What ``getrefcount`` says inside :meth:`Handoff.keep` of an object nothing else refers to.

    Measured the way ``keep`` is called, since it differs between interpreters (2 on CPython
    3.11-3.13; borrowed references make it lower on 3.14). None where there is no refcount
    (PyPy): then nothing is handed over.
    """
    if not hasattr(sys, "getrefcount"):
        return None
    return _Probe().count("", None, {0: object()}.pop(0))


_SOLE_OWNER = _sole_owner_count()


def _promises(cacher: Cacher) -> bool:
    """``hands_off`` is not inherited past an override of how the cacher stores or loads."""
    return holds(cacher, ("hands_off",), ("save", "load", "write", "read"))


class Handoff:
    """The outputs of the task that just ran in this process, by artifact hash."""

    def __init__(self) -> None:
        self._held: dict[str, Any] = {}

    def keep(self, artifact_hash: str, cacher: Cacher, obj: Any) -> bool:
        """Hold ``obj`` (just stored as ``artifact_hash``) for the next task; True when held.

        Pass the object without keeping a reference of your own (``handoff.keep(h, c, d.pop(k))``):
        an object referred to from anywhere else is not held.
        """
        if _SOLE_OWNER is None or not _promises(cacher) or not cacher.hands_off(obj):
            return False
        if not isinstance(obj, (str, bytes)) and sys.getrefcount(obj) > _SOLE_OWNER:
            return False
        self._held[artifact_hash] = obj
        return True

    def take(self, wanted: set[str]) -> dict[str, Any]:
        """The held objects among ``wanted`` artifact hashes; the rest are dropped, and the holder is empty."""
        held, self._held = self._held, {}
        return {h: held[h] for h in wanted & held.keys()}

    def clear(self) -> None:
        """Drop everything held (at the end of a run, or while the driver waits)."""
        self._held = {}
