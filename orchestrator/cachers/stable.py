"""Equal values, equal bytes: set order made independent of the process's hash seed.

A set's iteration order follows its items' hashes, and the hashes of ``str`` and ``bytes``
are salted per process (``PYTHONHASHSEED``), so pickling the same set of strings twice gives
different bytes, a different content hash, and no early cutoff downstream. :func:`stable`
returns the value with every set and frozenset of orderable items (inside lists, tuples
and dicts, at any depth) replaced by a stand-in that pickles as the same set built from
its sorted items; the original is returned untouched (no copy) when it holds no such set.
Sets inside other objects' state are pickled as they are.
"""

from __future__ import annotations

from typing import Any

__all__ = ["stable"]


class _SortedSet:
    """Pickles as ``set(sorted_items)`` (or a frozenset): loads back as the plain set."""

    __slots__ = ("kind", "items")

    def __init__(self, kind: type, items: list[Any]) -> None:
        self.kind = kind
        self.items = items

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.kind, (self.items,))


def stable(value: Any) -> Any:
    """``value`` with its sets in a deterministic pickling order (itself if it holds none, or a cycle)."""
    try:
        return _walk(value, {})
    except _Cycle:  # a container that holds itself: rebuilding it would change its shape
        return value


class _Cycle(Exception):
    pass


_BUSY = object()


_ATOMS = frozenset({int, float, str, bytes, bool, complex, type(None)})


def _walk(value: Any, seen: dict[int, Any]) -> Any:
    kind = type(value)
    if kind not in (list, tuple, dict, set, frozenset):
        return value
    if kind in (list, tuple) and set(map(type, value)) <= _ATOMS:  # nothing inside to reorder: as it is
        return value
    marker = id(value)
    done = seen.get(marker)
    if done is _BUSY:
        raise _Cycle
    if done is not None:  # shared: one replacement for one original
        return done
    seen[marker] = _BUSY
    if kind in (set, frozenset):
        items = [_walk(v, seen) for v in value]
        try:
            items.sort()
        except TypeError:  # items with no order: pickled as they are
            items = []
        result: Any = _SortedSet(kind, items) if len(items) > 1 else value
    elif kind is dict:
        pairs = [(_walk(k, seen), _walk(v, seen)) for k, v in value.items()]
        changed = any(a is not k or b is not v for (a, b), (k, v) in zip(pairs, value.items()))
        result = dict(pairs) if changed else value
    else:
        items = [_walk(v, seen) for v in value]
        changed = any(a is not b for a, b in zip(items, value))
        result = (items if kind is list else tuple(items)) if changed else value
    seen[marker] = result
    return result
