"""Settings read from the environment, each checked: a malformed one is a usage error with the fix.

``ORCHESTRATOR_LEASE_TTL=abc`` must not end a run in a ``ValueError`` traceback: every
environment setting the library reads goes through :func:`env_number` or :func:`env_json`,
which name the variable, say what was expected and how to fix it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .errors import UsageError

__all__ = ["env_json", "env_number"]


def env_number(name: str, default: float, *, what: str, minimum: float = 0.0, integer: bool = False) -> float:
    """The number in ``$name`` (``default`` when unset or empty)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text) if not integer else float(int(float(text)))
    except ValueError:
        value = float("nan")
    if not value >= minimum:  # also NaN
        raise UsageError(
            f"{name}={text!r} is not {what}. Fix: unset it (default {default:g}) or set a number of at "
            f"least {minimum:g}, e.g. export {name}={default:g}."
        )
    return value


def env_json(name: str, default: Any, *, what: str) -> Any:
    """The JSON value in ``$name`` (``default`` when unset or empty)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{name} is not valid JSON ({exc}); it should hold {what}. Fix: correct or unset it.") from None
    if not isinstance(value, type(default)):
        raise UsageError(f"{name} holds a {type(value).__name__}; it should hold {what}. Fix: correct or unset it.")
    return value
