"""The stage a worker process imports: found by module and name, checked against its key's code.

A worker (a pool process, a Dask or Ray worker, a SLURM job) imports the stage afresh; an edit
made after the run planned it must not run under the planned key.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from pathlib import Path

from ..project.declaration import Stage
from ..project.loader import Project
from .task import Task

__all__ = ["code_mismatch", "resolve_stage"]


# module name -> (the module, its stages by name): a module of 1,000 stages is scanned once, not once per stage
_STAGES: dict[str, tuple[ModuleType, dict[str, Stage]]] = {}


def resolve_stage(module: str, name: str, project_root: str) -> Stage:
    """Import ``module`` and return the stage called ``name`` defined there."""
    if project_root:  # first on sys.path, and no `stages` package of another project in the way
        Project(Path(project_root)).activate()
    mod = importlib.import_module(module)
    known = _STAGES.get(module)
    if known is None or known[0] is not mod or name not in known[1]:  # (a module imported afresh: scan it again)
        found: dict[str, Stage] = {}
        for value in vars(mod).values():
            if isinstance(value, Stage):
                found.setdefault(value.name, value)
        known = _STAGES[module] = (mod, found)
    stage = known[1].get(name)
    if stage is not None:
        return stage
    raise LookupError(f"module {module!r} defines no stage named {name!r}")


def code_mismatch(task: Task, stage: Stage) -> str:
    """Why the code this process imported for ``stage`` is not what ``task``'s key was computed for ("" if it is)."""
    from ..keys.fingerprint import fingerprint_of

    if not task.code or fingerprint_of(stage, task.code_root or task.project_root).digest == task.code:
        return ""
    return (f"the code of stage {task.stage!r} (or of something it uses) changed after the run planned it: "
            f"this worker imported code that does not match the key {task.key[:12]}, so nothing was "
            "stored under it. Fix: run the experiment again (the plan will see the edit); for jobs that "
            "wait in a queue, keep editing out of the stages until they start, or set snapshot = true "
            "under [tool.orchestrator.executor.slurm].")
