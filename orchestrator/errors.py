"""The one error tree of orchestrator.

Every error the library raises on purpose derives from :class:`OrchestratorError`.
Messages name the stage, artifact and param set involved, say what was expected and
what was found, and end with the fix. Only the CLI turns them into exit codes
(``exit_code``: 2 for a mistake in the project or the command, 1 for a failed run).

    OrchestratorError
    ├── UsageError              exit 2: the command or project is wrong before anything runs
    │   ├── ProjectError          no project root, a stage module that does not import
    │   ├── ParamsError           param files, --set overrides, unknown or mistyped params
    │   ├── DefinitionError       stage declarations and the DAG built from them
    │   │   ├── WiringError         missing producer, two producers, cycle, unknown target
    │   │   └── UnknownCacherError  a cacher name that is not registered
    │   └── RecordNotFound        a run id, stage or artifact that the run records do not hold
    ├── StageFailed             exit 1: a stage raised, returned the wrong outputs, or its cacher failed
    │   └── ExternalScriptFailed  an external script (ctx.torchrun) exited non-zero, timed out, was
    │                             killed, is missing, or did not write a declared output
    ├── StoreError              exit 1: the artifact store could not be read or written
    │   └── CorruptObjectError    a stored object no longer matches its content hash
    ├── RecordsError            exit 1: the run records database (runs.db) is damaged, busy or too new
    ├── ArtifactNotCached       exit 1: load() asked for an artifact that no run has produced yet
"""

from __future__ import annotations

import difflib
import os
import traceback
from collections.abc import Iterable
from pathlib import Path

LIBRARY_DIR = str(Path(__file__).resolve().parent) + os.sep  # frames here are orchestrator's, not the user's

__all__ = [
    "ArtifactNotCached",
    "CorruptObjectError",
    "DefinitionError",
    "ExternalScriptFailed",
    "OrchestratorError",
    "ParamsError",
    "ProjectError",
    "RecordNotFound",
    "RecordsError",
    "StageFailed",
    "StoreError",
    "UnknownCacherError",
    "UsageError",
    "WiringError",
    "did_you_mean",
]


class OrchestratorError(Exception):
    """Root of every error orchestrator raises on purpose."""

    exit_code = 1


class UsageError(OrchestratorError):
    """The command, the param files or the stage definitions are wrong; nothing ran."""

    exit_code = 2


class ProjectError(UsageError):
    """The project cannot be located or one of its stage modules does not import."""


class ParamsError(UsageError):
    """A param file, a param set or a ``--set`` override is invalid."""


class DefinitionError(UsageError):
    """A stage declaration is invalid (bad signature, bad outputs, unknown param)."""


class WiringError(DefinitionError):
    """Stages cannot be wired into a DAG by artifact name."""


class UnknownCacherError(DefinitionError):
    """A cacher name is not registered."""


class RecordNotFound(UsageError):
    """A run id (or prefix), stage, param set or artifact that the run records do not hold."""


class ResourceError(UsageError):
    """A stage asks for more GPUs or memory than the node has (or for a malformed amount)."""


class StageFailed(OrchestratorError):
    """A stage raised, returned outputs that do not match its declaration, or could not be stored.

    Attributes:
        stage: The stage name.
        param_set: The param set it ran for.
        cause_type: The name of the original exception type.
        traceback_text: The formatted traceback of the original exception, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        stage: str,
        param_set: str,
        cause_type: str = "",
        traceback_text: str = "",
    ) -> None:
        super().__init__(message)
        self.stage = stage
        self.param_set = param_set
        self.cause_type = cause_type
        self.traceback_text = traceback_text


class ExternalScriptFailed(StageFailed):
    """An external script launched by a stage (``ctx.torchrun``) failed; outputs were not published.

    The message names the stage and the script, the exit code, the log path and the last
    lines of the failing rank's output (its traceback), and ends with the fix.

    Attributes:
        script: The script, relative to the project root when inside it.
        returncode: torchrun's exit status (negative: a signal), or None if it never ran
            (``exit_code`` stays the CLI's: 1).
        rank: The failing rank, when torchrun reported one.
        log_path: The merged log of every rank ('' if it never ran).
        tail: The last lines of the failing rank's output.
    """

    def __init__(
        self,
        message: str,
        *,
        stage: str,
        param_set: str,
        script: str,
        returncode: int | None = None,
        rank: int | None = None,
        log_path: str = "",
        tail: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, stage=stage, param_set=param_set, cause_type="ExternalScriptFailed")
        self.script = script
        self.returncode = returncode
        self.rank = rank
        self.log_path = log_path
        self.tail = tail


class TrialPruned(OrchestratorError):
    """Raised in a stage whose search trial the pruner stopped (from ``ctx.metric`` or a torchrun stage).

    Not a failure: the trial is recorded as ``pruned``, and what it checkpointed stays in its attempt folder.
    """


class StoreError(OrchestratorError):
    """The artifact store could not be read or written."""


class CorruptObjectError(StoreError):
    """A stored object does not match its content hash (torn write, bit flip, manual edit)."""


class RecordsError(OrchestratorError):
    """The run records database could not be read or written (damaged, locked, or from a newer version)."""


class ArtifactNotCached(OrchestratorError):
    """An artifact was asked for that no run has stored for these params yet."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def user_traceback(exc: BaseException) -> str:
    """The traceback without the frames of orchestrator itself."""
    summary = traceback.TracebackException.from_exception(exc)
    frames = [f for f in summary.stack if not f.filename.startswith(LIBRARY_DIR)]
    summary.stack = traceback.StackSummary.from_list(frames)
    return "".join(summary.format())
