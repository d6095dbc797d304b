"""This machine's working folders beside a store: staging and scratch (``tmp/``), attempts, run logs.

A store holds content (objects, key records, refs) that any machine may share; the workspace is
always local: where cachers write before an output is hashed and published, where a stage's
scratch and attempt folders live, and where each node's log goes. For a remote store it is the
local cache folder.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import StoreError
from .localfs import bounded_name, remove

__all__ = ["Workspace"]


class Workspace:
    """The local working folders under ``root``; ``prepare`` creates them (and checks the store) on first use."""

    def __init__(self, root: Path, prepare: Callable[[], None]) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.attempts = root / "attempts"
        self._prepare = prepare
        self._logs: dict[tuple[str, str], Path] = {}
        self._inside: set[str] = set()  # paths found inside the store (their parents too, by construction)
        self._resolved: Path | None = None

    def folders(self) -> tuple[Path, ...]:
        return self.tmp, self.attempts

    def staging_path(self, suffix: str = "") -> Path:
        """A fresh local path under ``tmp/`` for a cacher to write to."""
        self._prepare()
        return self.tmp / f"{os.urandom(16).hex()}{suffix}"

    def attempt_dir(self, stage: str, key: str) -> Path:
        """A persistent local working folder for (stage, key), kept across failed attempts."""
        path = self._attempt(stage, key)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def drop_attempt(self, stage: str, key: str) -> None:
        """Remove the attempt folder after a success."""
        shutil.rmtree(self._attempt(stage, key), ignore_errors=True)

    def _attempt(self, stage: str, key: str) -> Path:
        name, part = bounded_name(stage), key[:16]
        if _plain(name) and _plain(part):  # one name inside a folder checked once (a check costs a resolve())
            return self.inside(self.attempts) / name / part
        return self.inside(self.attempts / name / part)

    def inside(self, path: Path) -> Path:
        """``path``, checked to stay inside the store (a name from user text never escapes it); memoized."""
        text = str(path)
        if text in self._inside:
            return path
        if self._resolved is None:
            self._resolved = self.root.resolve()
        if not path.resolve().is_relative_to(self._resolved):
            raise StoreError(f"{path} would be outside the store {self.root}. Fix: give the stage a name "
                             "without path separators or '..' (name=...).")
        self._inside.add(text)
        return path

    def scratch_dir(self) -> Path:
        """A fresh, private local scratch folder under ``tmp/`` (the caller removes it)."""
        self._prepare()
        import tempfile

        return Path(tempfile.mkdtemp(prefix="scratch-", dir=self.tmp))

    def log_path(self, run_id: str, node_id: str) -> Path:
        """Where a node's captured output goes for a run (``runs/<run>/logs/<node>.log``)."""
        found = self._logs.get((run_id, node_id))
        if found is None:  # asked three times per node: by the task, the run record and the outcome
            if self._logs and next(iter(self._logs))[0] != run_id:
                self._logs.clear()  # one run's at a time: a notebook's store lives for many runs
            safe = bounded_name("".join(c if c.isalnum() or c in "-_.@[],=" else "_" for c in node_id))
            logs, name = self.root / "runs" / run_id / "logs", f"{safe}.log"  # (``safe`` holds no separator)
            found = self.inside(logs) / name if _plain(run_id) else self.inside(logs / name)
            self._logs[(run_id, node_id)] = found
        return found

    def clean_tmp(self, older_than: float = 24 * 3600) -> None:
        """Remove staging leftovers of killed processes older than ``older_than`` seconds."""
        if not self.tmp.is_dir():
            return
        cutoff = time.time() - older_than
        for entry in self.tmp.iterdir():
            try:
                if entry.lstat().st_mtime < cutoff:
                    remove(entry)
            except OSError:
                continue


def _plain(name: str) -> bool:
    """A single path component that cannot lead out of its folder (no separator, not ``.`` or ``..``)."""
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")
