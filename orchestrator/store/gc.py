"""``experiment cache gc``: remove what no kept run can reach, safely beside running work.

Roots are the key records used by the kept runs (the newest ``keep_last`` runs, every run
newer than ``older_than``, every run still running), the source snapshots of those runs,
the key records and map segments written within the grace period (with ``keep_last``: since
the oldest kept run started, so unrecorded runs' results stay too), and every key with a
live lease. Key records outside the roots are forgotten first, then objects that nothing
left references. Objects younger than the grace period are never removed, so a run that is
writing right now (its objects land before its key records) loses nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import Store
from .leases import leased_keys

logger = logging.getLogger(__name__)

__all__ = ["GcReport", "collect_garbage"]

GRACE = 3600.0  # seconds: anything newer is kept whatever the roots say


@dataclass(frozen=True)
class GcReport:
    """What garbage collection removed (or would remove, on a dry run)."""

    kept_runs: int
    dropped_keys: int
    dropped_segments: int
    dropped_objects: int
    freed_bytes: int
    kept_bytes: int
    dry_run: bool
    dropped_attempts: int = 0


def collect_garbage(store: Store, *, keep_last: int | None = None, older_than: float | None = None,
                    max_size: int | None = None, dry_run: bool = False, grace: float = GRACE) -> GcReport:
    """Remove key records and objects unreachable from the kept runs (see the module docstring).

    Args:
        keep_last: Keep the newest N runs' results.
        older_than: Keep the results of runs (and records) newer than this many seconds.
        max_size: Then drop the oldest remaining records until reachable objects fit in this many bytes.
        dry_run: Only report.
        grace: Never touch anything newer than this many seconds.
    """
    now = time.time()
    runs = _runs(store)
    if (keep_last is not None or older_than is not None) and not runs and any(True for _ in store.list_names("keys")):
        from ..errors import UsageError
        from ..records.database import database_path

        raise UsageError(
            f"cache gc: {database_path(store.root)} holds no runs, so --keep-last/--older-than would keep "
            "nothing and remove every cached result. Fix: restore the run database (a damaged one moved "
            "aside can often be saved with `sqlite3 runs.db.damaged .recover | sqlite3 runs.db`), or run "
            "`experiment cache gc` without those options: it removes only unreferenced objects."
        )
    if keep_last is None and older_than is None:
        kept_runs = runs
    else:
        newest = runs[:keep_last] if keep_last is not None else []  # runs come in the database's order
        if keep_last:  # and the run that finished last is always kept, whatever any clock says
            finished = [r for r in runs if r.finished_seq is not None]
            if finished:
                newest = list({r.id: r for r in (*newest, max(finished, key=lambda r: r.finished_seq or 0))}.values())
        recent = [r for r in runs if older_than is not None and now - r.started < older_than]
        running = [r for r in runs if r.status == "running"]
        kept_runs = list({r.id: r for r in (*newest, *recent, *running)}.values())
    keys: set[str] = set()
    snapshot: set[str] = set()
    history = _history(store)
    for run in kept_runs:
        snapshot.update(str(h) for h in run.snapshot.values())
        if history is not None:
            keys.update(e.key for e in history.executions(run, parts=False) if e.key)
    keys.update(leased_keys(store))
    cutoff = now - max(grace, older_than or 0.0) if (keep_last is not None or older_than is not None) else None
    if cutoff is not None and keep_last is not None and newest:
        # a record written since the oldest kept run started belongs to no older run: it stays, even when
        # no run recorded it (``Session.run(record=False)``, a notebook)
        cutoff = min(cutoff, min(r.started for r in newest))
    records = list(store.records())
    drop = [r for r in records if cutoff is not None and r.key not in keys and r.created < cutoff]
    kept = sorted((r for r in records if r not in drop), key=lambda r: r.created)
    sizes = {h: (size, mtime) for h, size, mtime in store.object_entries()}
    if max_size is not None:
        while kept and _reachable_size(kept, sizes) > max_size and now - kept[0].created > grace:
            drop.append(kept.pop(0))
    segments = _segments(store, None if cutoff is None else cutoff, leased_keys(store))
    reachable = snapshot | _objects(kept)
    reachable |= {obj for rel, objects, fresh in segments if fresh for obj in objects}
    garbage = [(h, size) for h, (size, mtime) in sizes.items() if h not in reachable and now - mtime > grace]
    stale_segments = [(rel, obj) for rel, obj, fresh in segments if not fresh]
    attempts = _stale_attempts(store, cutoff, keys) if cutoff is not None else []
    if not dry_run:
        for folder in attempts:  # resumable work of failed runs older than what is kept
            shutil.rmtree(folder, ignore_errors=True)
        for record in drop:
            store.drop_record(record.key)
        for rel, _ in stale_segments:
            store.delete(rel)
        for object_hash, _ in garbage:
            store.discard_object(object_hash)
    # small outputs live inside their key records (inline.py): dropping a record frees its copy
    freed = sum(size for _, size in garbage) + _inline_size(drop)
    report = GcReport(len(kept_runs), len(drop), len(stale_segments), len(garbage), freed,
                      sum(sizes[h][0] for h in reachable if h in sizes) + _inline_size(kept), dry_run, len(attempts))
    logger.info("gc: %s", report)
    return report


def _stale_attempts(store: Store, cutoff: float, leased: set[str]) -> list[Path]:
    """Attempt folders (checkpoints of failed trainings) untouched since ``cutoff``, of keys no run holds."""
    found = []
    for stage in store.workspace.attempts.iterdir() if store.workspace.attempts.is_dir() else ():
        for folder in stage.iterdir() if stage.is_dir() else ():
            newest = max((p.stat().st_mtime for p in folder.rglob("*")), default=folder.stat().st_mtime)
            if newest < cutoff and not any(key.startswith(folder.name) for key in leased):
                found.append(folder)
    return found


def _objects(records: list[Any]) -> set[str]:
    """The objects key records reach: their outputs' (but those kept inline) and the files those hold."""
    found = {a.object for r in records for a in r.outputs.values() if a.data is None}
    return found | {ref for r in records for a in r.outputs.values() for ref in a.refs}


def _reachable_size(records: list[Any], sizes: dict[str, tuple[int, float]]) -> int:
    objects = _objects(records)
    return sum(sizes[h][0] for h in objects if h in sizes) + _inline_size(records)


def _inline_size(records: list[Any]) -> int:
    """Bytes of the outputs kept inside these key records (each record holds its own copy)."""
    return sum(a.size for r in records for a in r.outputs.values() if a.data is not None)


def _history(store: Store) -> Any:
    from ..records.database import database_path
    from ..records.history import open_history

    return open_history(store.root) if database_path(store.root).exists() else None


def _runs(store: Store) -> list[Any]:
    history = _history(store)
    return history.runs() if history is not None else []


def _segments(store: Store, cutoff: float | None, leased: set[str]) -> list[tuple[str, list[str], bool]]:
    """Every map segment record as (relative path, its objects: the segment's and its items' files, kept?).

    The segments of a map key that a live run holds (a map running or resuming now) are kept
    whatever their age: its driver reads them to skip finished items.
    """
    found = []
    for prefix in store.list_names("maps"):
        for map_key in store.list_names(f"maps/{prefix}"):
            folder = f"maps/{prefix}/{map_key}"
            held = map_key in leased
            for name in store.list_names(folder):
                text = store.read_text(f"{folder}/{name}")
                try:
                    data = json.loads(text or "")
                except ValueError:
                    continue
                created = float(data.get("created", 0))
                objects = [str(data.get("object", "")), *map(str, data.get("refs", []))]
                found.append((f"{folder}/{name}", objects,
                              held or cutoff is None or created >= cutoff))
    return found
