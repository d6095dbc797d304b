"""A stage's captured log (stdout, stderr and logging) for a recorded run.

A cached stage did not run, so its log is the one of the run that computed the cached
result; the entry says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .history import History

__all__ = ["LogEntry", "stage_logs"]

MAX_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class LogEntry:
    """The log of one stage execution."""

    stage: str
    param_set: str
    run_id: str
    path: str
    text: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


def _read(path: str) -> str | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(MAX_BYTES)
    except OSError:
        return None


def stage_logs(history: History, run: str, stage: str, param_set: str | None = None) -> list[LogEntry]:
    """The logs of ``stage`` in ``run`` (every param set unless ``param_set``)."""
    record = history.run(run)
    entries = []
    for e in history.stage_executions(record, stage, param_set):
        path, source, note = e.log_path, record.id, ""
        if e.status == "cached" and e.key:
            origin = history.first_ran(e.key)
            if origin is not None:
                path, source = origin.log_path, origin.run_id
                note = f"(cached: this is the log of {origin.stage} [{origin.param_set}] in run {source}, which computed it)"
            else:
                note = "(cached from before the run records began: no log)"
        elif e.status == "skipped":
            note = "(skipped: it did not run)"
        text = _read(path)
        if text is None:
            if not note:
                note = f"(no log file at {path})" if path else "(no log recorded)"
            text = ""
        entries.append(LogEntry(e.stage, e.param_set, source, str(Path(path)) if path else "", text, note))
    return entries
