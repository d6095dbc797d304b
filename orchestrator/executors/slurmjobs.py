"""The jobs a SLURM run submitted, by cache key: what lets a later run re-attach instead of resubmitting.

``<folder>/jobs.jsonl`` gets one line per submitted task (key, job id, stage, param set, run), written
when the job is submitted. A later ``experiment run`` (after ``--detach``, a killed driver or a lost
login node) looks a task's key up here: a job still queued or running is watched again, a finished
one is collected, and only a job that failed, was cancelled or vanished is submitted anew.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["ACTIVE", "JobEntry", "JobRegistry", "state_of"]

#: SLURM states of a job that may still produce its result
ACTIVE = frozenset({"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED",
                    "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "UNKNOWN"})


@dataclass(frozen=True)
class JobEntry:
    """One submitted task: which job (``123_4`` in an array) computes which key, for which run."""

    key: str
    job_id: str
    stage: str
    param_set: str
    node: str
    run_id: str
    submitted: float


class JobRegistry:
    """The append-only list of submitted jobs of one submitit folder."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / "jobs.jsonl"

    def add(self, entries: Iterable[JobEntry]) -> None:
        """Remember submitted jobs (synced: a driver killed right after still finds them)."""
        lines = "".join(json.dumps(asdict(e)) + "\n" for e in entries)
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(lines)
            out.flush()
            os.fsync(out.fileno())

    def entries(self) -> list[JobEntry]:
        """Every job submitted from this folder, oldest first."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        found = []
        for line in text.splitlines():
            try:
                found.append(JobEntry(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # a line cut by a kill
        return found

    def latest(self) -> dict[str, JobEntry]:
        """The last job submitted for each key."""
        return {e.key: e for e in self.entries()}

    def of_run(self, run_id: str) -> list[JobEntry]:
        """The jobs a run submitted (or re-attached to), in submission order."""
        return [e for e in self.entries() if e.run_id == run_id]


def state_of(job: Any) -> str:
    """A job's state in SLURM's words (``PENDING``, ``RUNNING``, ``COMPLETED``, ``FAILED``...).

    submitit's local jobs seen from another process than the one that started them only know
    whether their result exists: a live process of that id counts as ``RUNNING``.
    """
    try:
        state = str(job.state).upper()
    except Exception as exc:  # noqa: BLE001 - sacct unreachable: ask again later rather than resubmit
        logger.warning("cannot read the state of job %s: %s", getattr(job, "job_id", "?"), exc)
        return "UNKNOWN"
    if state == "FINISHED":
        return "COMPLETED"
    if state.startswith("NO PROCESS"):
        pid = str(job.job_id).split("_")[0]
        if pid.isdigit() and _alive(int(pid)):
            return "RUNNING"
        return "LOST"
    if state == "INTERRUPTED":
        return "CANCELLED"
    return state.split()[0] if state else "UNKNOWN"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def age(entry: JobEntry) -> str:
    """How long ago a job was submitted, for listings."""
    seconds = max(0.0, time.time() - entry.submitted)
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"
