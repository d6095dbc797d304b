"""Paths inside stored values: files a stage returns inside a value are kept in the store, by content.

A map item that writes a file into ``ctx.scratch_dir`` and returns its ``Path``, or a stage that
returns ``{"model": Path(...), "score": 0.9}`` with the pickle cacher, must not leave an artifact
pointing at a file that tmp clean-up, another machine or the next ``git clean`` will not have.
:func:`store_paths` copies every existing file or folder a value refers to into the store and
puts a :class:`StoredPath` (its content hash) in its place; the artifact record lists those
objects (``refs``) so gc keeps them and verify checks them. Loading the artifact
(:func:`resolve_paths`) gives back a ``Path`` to the stored, read-only copy, named by its hash.
The stored bytes depend only on the files' content, never on where they were written.

:func:`paths_in_pickle` finds the paths a pickled artifact still holds without running any of
its code, for ``experiment cache verify`` to report those outside the store.
"""

from __future__ import annotations

import pickletools
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from ..errors import CorruptObjectError

__all__ = ["StoredPath", "paths_in_pickle", "resolve_paths", "store_paths"]


@dataclass(frozen=True)
class StoredPath:
    """A file (``kind="file"``) or folder (``"dir"``) kept in the store as the object ``object``."""

    object: str
    kind: str = "file"


def store_paths(store: Any, value: Any) -> tuple[Any, tuple[str, ...]]:
    """``value`` with each existing file or folder ``Path`` in it stored and replaced by a StoredPath.

    Paths are looked for in ``value`` itself and inside lists, tuples (named ones too), dicts
    (values) and sets, at any depth. A path that does not exist stays a path. Returns the new
    value (``value`` itself when it holds no path) and the objects it refers to, sorted.
    """
    refs: set[str] = set()

    def stored(path: Path) -> Any:
        if not (path.is_file() or path.is_dir()):
            return path
        staged = store.workspace.staging_path(".ref")
        if path.is_dir():
            shutil.copytree(path, staged)
        else:
            shutil.copyfile(path, staged)
        digest, _, kind = store.ingest(staged)
        refs.add(digest)
        return StoredPath(digest, kind)

    def seen(marker: StoredPath) -> StoredPath:
        refs.add(marker.object)
        return marker

    return _rebuilt(value, stored, seen), tuple(sorted(refs))


def resolve_paths(store: Any, value: Any, where: str) -> Any:
    """``value`` with each StoredPath replaced by a local path to its object; ``where`` names the artifact."""

    def local(marker: StoredPath) -> Path:
        if not store.has_object(marker.object):
            raise CorruptObjectError(f"{where} refers to a stored file {marker.object[:12]} that is missing from "
                                     "the store. Fix: run again; the producer is computed again.")
        return store.local_object(marker.object, marker.kind)  # type: ignore[no-any-return]

    return _rebuilt(value, lambda path: path, local)


def _rebuilt(value: Any, on_path: Callable[[Path], Any], on_marker: Callable[[StoredPath], Any]) -> Any:
    """``value`` rebuilt with ``on_path`` and ``on_marker`` applied to what it holds (itself when unchanged)."""
    if isinstance(value, StoredPath):
        return on_marker(value)
    if isinstance(value, Path):
        return on_path(value)
    kind = type(value)
    if kind in (list, tuple) and set(map(type, value)) <= _ATOMS:  # no path inside: as it is (a million numbers)
        return value
    if kind in (list, tuple, set, frozenset) or (isinstance(value, tuple) and hasattr(value, "_fields")):
        items = [_rebuilt(v, on_path, on_marker) for v in value]
        if all(a is b for a, b in zip(items, value)):
            return value
        return kind(*items) if kind not in (list, tuple, set, frozenset) else kind(items)
    if kind is dict:
        rebuilt = {k: _rebuilt(v, on_path, on_marker) for k, v in value.items()}
        return value if all(rebuilt[k] is v for k, v in value.items()) else rebuilt
    return value


_ATOMS = frozenset({int, float, str, bytes, bool, complex, type(None)})
_PATH_CLASSES = frozenset({"Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"})
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING",
                      "STRING"})


def paths_in_pickle(data: bytes) -> list[str]:
    """The paths a pickle holds (``pathlib`` objects), read from its opcodes: nothing is imported or run.

    The scan follows the strings and classes the pickle pushes (and its memo, where a repeated
    class or string is fetched from), and collects the string parts between a ``pathlib`` class
    and the call that builds the path from them.
    """
    memo: dict[int, Any] = {}
    last: Any = None
    before: Any = None
    parts: list[str] | None = None
    found: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            name = op.name
            value: Any = None
            if name in _STRINGS:
                value = arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)
            elif name == "STACK_GLOBAL":
                value = ("class", before, last)
            elif name in ("GLOBAL", "INST"):
                module, _, cls = str(arg).partition(" ")
                value = ("class", module, cls)
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                value = memo.get(int(arg or 0))
            elif name == "MEMOIZE":
                memo[len(memo)] = last
                continue
            elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(arg or 0)] = last
                continue
            elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ") and parts is not None:
                found.append(str(PurePath(*parts)) if parts else ".")
                parts = None
            if isinstance(value, tuple) and value[1] in ("pathlib", "pathlib._local") and value[2] in _PATH_CLASSES:
                parts = []
            elif isinstance(value, str) and parts is not None:
                parts.append(value)
            before, last = last, value
    except Exception:  # noqa: BLE001 - a truncated or unusual pickle: what was seen before it still counts
        pass
    return found
