"""Output that needs no rich: the --json run summary and the resume command (kept light)."""

from __future__ import annotations

import shlex
from typing import Any

from ..outcomes import RunResult

__all__ = ["result_json", "resume_command"]


def resume_command(names: Any, overrides: Any, targets: Any, cache_dir: Any) -> str:
    """The command that resumes (reruns) this run."""
    words = ["experiment", "run", *names]
    words += [w for o in overrides for w in ("--set", o)]
    words += [w for t in targets for w in ("--target", t)]
    if cache_dir:
        words += ["--cache-dir", str(cache_dir)]
    return shlex.join(words)


def result_json(result: RunResult) -> dict[str, Any]:
    """The --json summary of a run."""
    return {
        "run_id": result.run_id,
        "status": result.status,
        "seconds": round(result.seconds, 3),
        "nodes": [
            {
                "stage": o.stage,
                "param_set": o.param_set,
                "status": o.status.value,
                "key": o.key,
                "seconds": round(o.seconds, 3),
                "reasons": list(o.reasons),
                "outputs": {name: a.hash for name, a in o.outputs.items()},
                "error": None if o.error is None else {"kind": o.error.kind, "message": o.error.message,
                                                       "type": o.error.type, "traceback": o.error.traceback},
            }
            for o in result.outcomes
        ],
    }
