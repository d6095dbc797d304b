"""Output that needs no rich: the --json run summary and the resume command (kept light)."""

from __future__ import annotations

import shlex
from typing import Any

from ..outcomes import RunResult

__all__ = ["result_json", "resume_command"]


def resume_command(command: Any, params: dict[str, Any], skip: tuple[str, ...] = ("force", "dry_run")) -> str:
    """The command that resumes (reruns) this run: the same arguments and options, without ``skip``.

    Args:
        command: The click command that ran.
        params: Its parsed parameters (``click.Context.params``).
        skip: Parameters a rerun must not repeat (a forced stage that finished is now cached).
    """
    words = ["experiment", command.name]
    options: list[str] = []
    for param in command.params:
        value = params.get(param.name)
        if param.name in skip or value is None or value is False or value in ((), "") or value == param.default:
            continue
        if param.param_type_name == "argument":
            words += [str(v) for v in value]
            continue
        flag = max(param.opts, key=len)
        if getattr(param, "is_flag", False):
            options.append(flag)
            continue
        for item in value if getattr(param, "multiple", False) else (value,):
            options += [flag, "/".join(map(str, item)) if isinstance(item, tuple) else str(item)]
    return shlex.join(words + options)


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
