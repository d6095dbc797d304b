"""Content hashes of files outside the store, memoized by (path, size, mtime).

A rerun over 100,000 unchanged files only stats them; only new or modified files are
read and hashed. The memo lives in the store (``filehashes.json``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..keys.hashing import hash_file
from .base import Store
from .localfs import write_atomic

__all__ = ["FileHashes"]


class FileHashes:
    """A memo of file content hashes keyed by absolute path, size and modification time."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.path = store.root / "filehashes.json"
        self._memo: dict[str, list[object]] | None = None
        self._dirty = False

    def _load(self) -> dict[str, list[object]]:
        if self._memo is None:
            try:
                self._memo = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._memo = {}
        return self._memo

    def hash(self, path: Path) -> str:
        """The content hash of ``path`` (re-read only when its size or mtime changed)."""
        resolved = str(Path(path).resolve())
        stat = os.stat(resolved)
        memo = self._load()
        entry = memo.get(resolved)
        if entry and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
            return str(entry[2])
        digest = hash_file(resolved)
        memo[resolved] = [stat.st_size, stat.st_mtime_ns, digest]
        self._dirty = True
        return digest

    def save(self) -> None:
        """Persist new entries."""
        if self._dirty and self._memo is not None:
            write_atomic(self.path, json.dumps(self._memo))
            self._dirty = False
