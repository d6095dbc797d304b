"""orchestrator: a DAG experiment orchestrator with content-addressed artifact caching.

Declare stages with :func:`stage` and :func:`aggregate`, describe param sets in
``params/``, and run ``experiment run NAME``. From Python: :func:`run`, :func:`load`.

Attributes are imported on first use, so ``import orchestrator`` (and the CLI's start-up)
stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ArtifactNotCached": "errors",
    "Cacher": "cachers",
    "Data": "project.datadeps",
    "DefinitionError": "errors",
    "Executor": "executors",
    "OrchestratorError": "errors",
    "ParamsError": "errors",
    "RunResult": "engine.driver",
    "Stage": "project.declaration",
    "StageContext": "engine.context",
    "StageFailed": "errors",
    "Status": "engine.driver",
    "StoreError": "errors",
    "UsageError": "errors",
    "aggregate": "project.decorators",
    "files": "project.filesets",
    "load": "api",
    "open_session": "api",
    "plan": "api",
    "register_cacher": "cachers",
    "register_executor": "executors",
    "run": "api",
    "stage": "project.decorators",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # pragma: no cover
    from .api import load, open_session, plan, run
    from .cachers import Cacher, register_cacher
    from .engine.context import StageContext
    from .engine.driver import RunResult, Status
    from .errors import (
        ArtifactNotCached,
        DefinitionError,
        OrchestratorError,
        ParamsError,
        StageFailed,
        StoreError,
        UsageError,
    )
    from .executors import Executor, register_executor
    from .project.datadeps import Data
    from .project.declaration import Stage
    from .project.decorators import aggregate, stage
    from .project.filesets import files
