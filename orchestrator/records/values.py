"""The values the run records are read as: runs, stage executions, artifacts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ArtifactInfo", "ExecutionRecord", "RunRecord", "final_metrics"]


@dataclass(frozen=True)
class RunRecord:
    """One recorded run (``status`` is the effective one: a dead ``running`` run is ``interrupted``)."""

    id: str
    description: str
    status: str
    started: float
    ended: float | None
    seconds: float | None
    project: str
    cwd: str
    command: str
    host: str
    user: str
    pid: int | None
    experiment: Mapping[str, Any]
    environment: Mapping[str, Any]
    git: Mapping[str, Any]
    snapshot: Mapping[str, str]
    dag: Mapping[str, Any]
    counts: Mapping[str, int]
    metrics: Mapping[str, float]
    report: str
    #: the order the run finished in, assigned by the run database (None while running)
    finished_seq: int | None = None
    tags: tuple[str, ...] = ()
    notes: tuple[Mapping[str, Any], ...] = ()  # {"time": ..., "text": ...}, oldest first

    @property
    def title(self) -> str:
        """The --desc text, else the param files' description, else the command."""
        return self.description or str(self.experiment.get("description") or "") or self.command or self.id

    @property
    def param_sets(self) -> Mapping[str, Mapping[str, Any]]:
        """Resolved params of every set, by set name."""
        return self.experiment.get("sets", {})  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ArtifactInfo:
    """An artifact as recorded: content hash, stored object, cacher and size."""

    name: str
    hash: str
    object: str = ""
    cacher: str = ""
    cacher_version: str = ""
    size: int = 0
    kind: str = "file"


@dataclass(frozen=True)
class ExecutionRecord:
    """One stage execution (a node of one run) with its key parts, outputs, failure and extras."""

    run_id: str
    node: str
    seq: int
    stage: str
    param_set: str
    key: str | None
    status: str
    started: float | None
    ended: float | None
    seconds: float
    peak_rss: int
    reasons: tuple[str, ...]
    outputs: Mapping[str, ArtifactInfo]
    log_path: str
    error: Mapping[str, str] | None
    extras: Mapping[str, Any] = field(default_factory=dict)
    parts: Mapping[str, Any] | None = None
    code_label: str = ""


def final_metrics(extras: Mapping[str, Any]) -> dict[str, float]:
    """The last value of each ``ctx.metric`` and the numbers of ``metrics`` reportables."""
    finals: dict[str, float] = {}
    for entry in extras.get("metrics", ()):
        finals[str(entry.get("name"))] = float(entry.get("value"))
    for report in extras.get("reports", ()):
        if report.get("kind") == "metrics":
            for name, value in dict(report.get("values") or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    finals[f"{report.get('name')}.{name}"] = float(value)
    return finals
