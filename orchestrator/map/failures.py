"""What a map stage says about items that raised: counts, indexes, one traceback per distinct failure (pure)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..engine.task import FailureKind, Task, TaskError, TaskFailed

if TYPE_CHECKING:
    from ..project.declaration import Stage

logger = logging.getLogger(__name__)

__all__ = ["ItemFailure", "at_every_position", "check_failures", "failure_text"]

REPORTED_FAILURES = 100  # failures listed one per line in the stage's report
DISTINCT_TRACEBACKS = 5  # tracebacks kept in a failed map's error, one per distinct failure


@dataclass(frozen=True)
class ItemFailure:
    """An item whose call raised."""

    index: int
    type: str
    message: str
    traceback: str


def at_every_position(failures: list[ItemFailure], hashes: Sequence[str], mine: Sequence[int]) -> list[ItemFailure]:
    """A duplicate item ran once, at its first position: its failure is every copy's."""
    by_hash = {hashes[f.index]: f for f in failures}
    return [replace(by_hash[hashes[p]], index=p) for p in mine if hashes[p] in by_hash]


def failure_text(failures: list[ItemFailure], total: int) -> str:
    """The failures one per line (up to ``REPORTED_FAILURES``), for the stage's report."""
    kept = sorted(failures, key=lambda f: f.index)[:REPORTED_FAILURES]
    lines = [f"{len(failures)} of {total} items failed:"]
    lines += [f"- item {f.index}: {f.type}: {f.message}" for f in kept]
    if len(failures) > len(kept):
        lines.append(f"- ... and {len(failures) - len(kept)} more")
    return "\n".join(lines)


def check_failures(stage: Stage, task: Task, failures: list[ItemFailure], total: int,
                   retried: str = "only the failed ones") -> None:
    """Warn about accepted failures; raise :class:`TaskFailed` for more than the stage accepts."""
    if not failures:
        return
    if stage.options.get("on_item_error") == "skip":
        allowed = total
    else:
        given = task.options.map.max_item_failures
        allowed = int(stage.options.get("max_item_failures", 0) if given is None else given)
    first = min(failures, key=lambda f: f.index)
    if len(failures) <= allowed:
        logger.warning("%s: %d of %d items failed and were accepted (first: item %d: %s: %s)", stage.name,
                       len(failures), total, first.index, first.type, first.message)
        return
    listed = ", ".join(str(f.index) for f in sorted(failures, key=lambda f: f.index)[:10])
    message = (f"{len(failures)} of {total} items failed (items {listed}{'...' if len(failures) > 10 else ''}); "
               f"first: item {first.index}: {first.type}: {first.message}. The other items are stored: a rerun "
               f"retries {retried}. Fix the cause, or accept failures with --max-item-failures N "
               "or @stage(..., on_item_error='skip').")
    raise TaskFailed(TaskError(FailureKind.ITEMS, message, first.type, _tracebacks(failures)))


def _tracebacks(failures: list[ItemFailure]) -> str:
    """One traceback per distinct failure (same frames and type), headed by the items that hit it."""
    groups: dict[tuple[str, str], list[ItemFailure]] = {}
    for failure in sorted(failures, key=lambda f: f.index):
        frames = failure.traceback.rstrip().rsplit("\n", 1)[0]  # without the `Type: message` line
        groups.setdefault((failure.type, frames), []).append(failure)
    parts = []
    for hits in list(groups.values())[:DISTINCT_TRACEBACKS]:
        items = ", ".join(str(f.index) for f in hits[:10]) + (f" and {len(hits) - 10} more" if len(hits) > 10 else "")
        parts.append(f"item {items}:\n{hits[0].traceback.rstrip()}")
    if len(groups) > DISTINCT_TRACEBACKS:
        parts.append(f"... and {len(groups) - DISTINCT_TRACEBACKS} more distinct failures")
    return "\n\n".join(parts) + "\n"
