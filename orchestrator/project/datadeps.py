"""Data named by a param: a file, a folder or a glob whose *content* is part of the key.

Real pipelines take their input folder or checkpoint from the config (``input_path:
data/corpus``). A param annotated as data is keyed by what the path holds, not by the path
string::

    from typing import Annotated
    from orchestrator import Data

    @stage(outputs=["totals"])
    def count(input_path: Annotated[Path, Data(pattern="**/*.txt")]): ...

The content is a *manifest*: every file under the path (matching the pattern) with its size
and content hash, memoized by size and mtime (:class:`~orchestrator.store.filehashes.FileHashes`),
so a rerun over unchanged data only stats the files. Manifests are kept in the store under
their digest, so a plan can say what changed: ``data/corpus: 5 files added, 1 changed``.
"""

from __future__ import annotations

import glob as globbing
import json
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..keys.hashing import hash_struct

__all__ = ["Data", "Manifests", "data_params", "describe_change"]

_GLOB = set("*?[")


@dataclass(frozen=True)
class Data:
    """Marks a param as data: ``Annotated[Path, Data()]`` or ``Annotated[str, Data(pattern="**/*.py")]``.

    Attributes:
        pattern: Which files under a folder count (``**`` recurses); ignored for a file. A
            value that is itself a glob (``data/*.csv``) is used as it is.
    """

    pattern: str = "**/*"


def data_params(fn: Callable[..., Any]) -> dict[str, Data]:
    """The params of ``fn`` annotated as data (string annotations are evaluated where they can be)."""
    raw = getattr(fn, "__annotations__", None) or {}
    if not any(hasattr(a, "__metadata__") or (isinstance(a, str) and "Annotated" in a) for a in raw.values()):
        return {}  # (no Annotated[...] at all: the common case, without evaluating anything)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # an annotation that does not evaluate: look at the raw ones
        hints = dict(getattr(fn, "__annotations__", {}) or {})
    found: dict[str, Data] = {}
    for name, hint in hints.items():
        for meta in getattr(hint, "__metadata__", ()):
            if meta is Data:
                found[name] = Data()
            elif isinstance(meta, Data):
                found[name] = meta
    return found


class Manifests:
    """Content manifests of data paths under a project root, memoized per (path, pattern)."""

    def __init__(self, root: Path, store: Any) -> None:
        from ..store.filehashes import FileHashes

        self.root = root
        self.store = store
        self.hashes = FileHashes(store)
        self._digests: dict[tuple[str, str], str] = {}

    def digest(self, value: Any, pattern: str) -> str:
        """The digest of what ``value`` (a path, a folder or a glob) holds; the manifest goes to the store."""
        memo_key = (str(value), pattern)
        found = self._digests.get(memo_key)
        if found is None:
            manifest = self.manifest(str(value), pattern)
            found = hash_struct(["Data", sorted(manifest.items())])
            self._digests[memo_key] = found
            self._keep(found, manifest)
        return found

    def manifest(self, value: str, pattern: str) -> dict[str, list[Any]]:
        """``{relative path: [size, content hash]}`` of the files ``value`` names."""
        path = Path(value) if Path(value).is_absolute() else self.root / value
        if _GLOB & set(value):
            base = Path(value.split("*")[0].split("?")[0].split("[")[0] or ".")
            base = base if base.is_absolute() else self.root / base
            folder = base if base.is_dir() else base.parent
            matches = [Path(m) for m in globbing.glob(str(path), recursive=True)]
        elif path.is_dir():
            folder = path
            matches = [Path(m) for m in globbing.glob(str(path / pattern), recursive=True)]
        elif path.is_file():
            return {"": [path.stat().st_size, self.hashes.hash(path)]}
        else:
            return {"": ["missing", value]}
        return {m.relative_to(folder).as_posix(): [m.stat().st_size, self.hashes.hash(m)]
                for m in sorted(matches) if m.is_file()}

    def _keep(self, digest: str, manifest: Mapping[str, Any]) -> None:
        rel = f"manifests/{digest[:2]}/{digest}.json"
        try:
            if self.store.read_text(rel) is None:
                self.store.write_text(rel, json.dumps(manifest, sort_keys=True))
        except OSError:  # a read-only store: the plan says less, the key is the same
            pass

    def save(self) -> None:
        """Persist the file-hash memo."""
        try:
            self.hashes.save()
        except OSError:
            pass


def describe_change(store: Any, old: str, new: str) -> str:
    """``5 files added, 1 changed`` between two stored manifests ("changed" when one is not stored)."""
    def load(digest: str) -> dict[str, Any] | None:
        try:
            text = store.read_text(f"manifests/{digest[:2]}/{digest}.json")
        except (OSError, AttributeError):
            return None
        return json.loads(text) if text else None

    before, after = load(old), load(new)
    if before is None or after is None:
        return "changed"
    if set(before) == {""} or set(after) == {""}:
        return "content changed" if before.get("") != after.get("") else "changed"
    added = len(set(after) - set(before))
    removed = len(set(before) - set(after))
    changed = sum(1 for p in set(before) & set(after) if before[p] != after[p])
    counts = [(n, what) for n, what in ((added, "added"), (removed, "removed"), (changed, "changed")) if n]
    parts = [f"{n} file{'s' if n != 1 else ''} {what}" if i == 0 else f"{n} {what}" for i, (n, what) in enumerate(counts)]
    return ", ".join(parts) or "changed"  # 5 files added, 1 changed
