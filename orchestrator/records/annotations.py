"""Tags and notes on recorded runs: ``run --tag``, ``experiment tag RUN TAG...``, ``experiment note RUN TEXT``."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError
from .database import connect, database_path, guarded
from .history import open_history
from .values import RunRecord

__all__ = ["check_tags", "note_run", "tag_run"]

_TAG = re.compile(r"^[\w.:/+-]{1,64}$")


def check_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """The tags, each checked: letters, digits and ``_.:/+-``, at most 64 characters."""
    for tag in tags:
        if not _TAG.match(tag):
            raise UsageError(f"tag {tag!r}: use letters, digits and _ . : / + - (at most 64 characters, no "
                             "spaces). Fix: e.g. --tag best or --tag paper/fig3.")
    return tuple(dict.fromkeys(tags))


def tag_run(cache_dir: Path, ref: str, tags: Sequence[str], *, remove: bool = False) -> RunRecord:
    """Add ``tags`` to the run ``ref`` names (or remove them); returns the run as it is now."""
    wanted = check_tags(tags)
    run_id = _resolve(cache_dir, ref)
    path = database_path(cache_dir)
    with contextlib.closing(connect(path)) as conn, guarded(path):
        if remove:
            conn.executemany("DELETE FROM tags WHERE run_id = ? AND tag = ?", [(run_id, t) for t in wanted])
        else:
            conn.executemany("INSERT OR IGNORE INTO tags (run_id, tag) VALUES (?, ?)", [(run_id, t) for t in wanted])
    return _reread(cache_dir, run_id)


def note_run(cache_dir: Path, ref: str, text: str) -> RunRecord:
    """Append a dated note to the run ``ref`` names; returns the run as it is now."""
    if not text.strip():
        raise UsageError("the note is empty. Fix: experiment note RUN 'what you found'.")
    run_id = _resolve(cache_dir, ref)
    path = database_path(cache_dir)
    with contextlib.closing(connect(path)) as conn, guarded(path):
        conn.execute("BEGIN IMMEDIATE")
        notes = json.loads(conn.execute("SELECT notes FROM runs WHERE id = ?", [run_id]).fetchone()[0] or "[]")
        notes.append({"time": time.time(), "text": text.strip()})
        conn.execute("UPDATE runs SET notes = ? WHERE id = ?", [json.dumps(notes), run_id])
        conn.execute("COMMIT")
    return _reread(cache_dir, run_id)


def _resolve(cache_dir: Path, ref: str) -> str:
    with open_history(cache_dir) as history:
        return history.run(ref).id


def _reread(cache_dir: Path, run_id: str) -> RunRecord:
    with open_history(cache_dir) as history:
        return history.run(run_id)
