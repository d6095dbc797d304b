"""Run records: every run and stage execution in SQLite, and the questions they answer.

Data flows: the runner's events -> :class:`RunRecorder` -> ``<cache>/runs.db``
(:mod:`.database`) -> :class:`History` queries -> :mod:`.provenance` answers (explain,
lineage, diff), :mod:`.report` pages and the :mod:`.server` UI.

Attributes are imported on first use, so importing this package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "History": "history",
    "RunRecorder": "recorder",
    "explain": "provenance",
    "lineage": "provenance",
    "open_history": "history",
    "render_report": "report",
    "report_path": "report",
    "run_diff": "provenance",
    "write_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # pragma: no cover
    from .history import History, open_history
    from .provenance import explain, lineage, run_diff
    from .recorder import RunRecorder
    from .report import render_report, report_path, write_report
