"""The digests of project code's definitions, memoized in the store between runs (``codedigests.json``).

One entry per module file: the memo key of the source it was computed from
(:func:`orchestrator.keys.definitions.memo_key`: the file's full content hash, the Python
version, the algorithm), a checksum, and the payload of
:class:`~orchestrator.keys.definitions.ModuleDefinitions`. An entry is handed out only for the
very key asked for, so an edited file never gets a stale digest, whatever its modification time;
a damaged, partial or foreign file is read as an empty memo and rewritten. It is a cache: a run
that cannot write it goes on, and deleting it only costs the next run a parse.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..keys.hashing import hash_bytes
from .localfs import write_atomic

logger = logging.getLogger(__name__)

__all__ = ["CodeDigests"]

FILENAME = "codedigests.json"


class CodeDigests:
    """A memo of :class:`~orchestrator.keys.definitions.ModuleDefinitions` payloads by module file and key."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / FILENAME
        self._entries: dict[str, list[str]] | None = None
        self._new: dict[str, list[str]] = {}

    def get(self, filename: str, key: str) -> Any | None:
        """The payload memoized for ``filename`` under ``key``, or None (absent, stale or damaged)."""
        entry = self._load().get(filename)
        if entry is None or entry[0] != key or entry[1] != _check(key, entry[2]):
            return None
        try:
            return json.loads(entry[2])
        except ValueError:
            return None

    def put(self, filename: str, key: str, payload: Any) -> None:
        """Remember ``payload`` for ``filename`` under ``key`` (written by :meth:`save`)."""
        text = json.dumps(payload, separators=(",", ":"))
        self._new[filename] = [key, _check(key, text), text]

    def save(self) -> None:
        """Write the new entries, merged into what the file holds now; a failure is only logged.

        Only into a store that exists: a plan of a project never run creates no cache folder.
        """
        if not self._new or not self.path.parent.is_dir():
            return
        self._entries = None  # another run may have written since we read
        entries = {**self._load(), **self._new}
        try:
            write_atomic(self.path, json.dumps(entries, separators=(",", ":")))
        except OSError as exc:
            logger.debug("could not write %s: %s", self.path, exc)
            return
        self._entries, self._new = entries, {}

    def _load(self) -> dict[str, list[str]]:
        if self._entries is None:
            entries: dict[str, list[str]] = {}
            try:
                found = json.loads(self.path.read_bytes())
            except (OSError, ValueError):
                found = {}
            if isinstance(found, dict):
                entries = {name: entry for name, entry in found.items()
                           if isinstance(entry, list) and len(entry) == 3 and all(isinstance(e, str) for e in entry)}
            self._entries = entries
        return self._entries


def _check(key: str, text: str) -> str:
    return hash_bytes(f"{key}\n{text}".encode())
