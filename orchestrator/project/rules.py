"""Rules a stage declaration must follow beyond its signature, and where a broken one is.

A mistake in ``@stage(...)`` is reported at the user's line, never inside the library:
:func:`user_site` finds the innermost frame outside this package (the decorated
function's module, at the decorator). :func:`check_function` rejects what cannot be a
stage (generators, coroutines, methods); :func:`claim_name` catches two stages of one
name in one module, where the second would silently replace the first.
"""

from __future__ import annotations

import inspect
import os
import sys
import types
from collections.abc import Callable
from typing import Any

from ..errors import LIBRARY_DIR, DefinitionError

__all__ = ["check_function", "claim_name", "user_site"]

# module name -> (the code object of the module body being executed, {stage name: line})
_CLAIMED: dict[str, tuple[types.CodeType, dict[str, int]]] = {}


def user_site() -> str:
    """``path:line`` of the innermost frame outside the library (the user's ``@stage`` line)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(LIBRARY_DIR):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "<unknown>"
    filename = frame.f_code.co_filename
    try:
        filename = os.path.relpath(filename)
    except ValueError:
        pass
    return f"{filename}:{frame.f_lineno}"


def check_function(fn: Callable[..., Any], name: str) -> None:
    """Reject functions that cannot be stages, with the fix."""
    if inspect.isasyncgenfunction(fn) or inspect.iscoroutinefunction(fn):
        raise DefinitionError(
            f"stage {name!r} is an async def: stages are called synchronously, so its coroutine would never "
            "run. Fix: make it a plain def and run the coroutine inside it with asyncio.run(...)."
        )
    if inspect.isgeneratorfunction(fn):
        raise DefinitionError(
            f"stage {name!r} is a generator function (it yields): a stage returns its outputs once, and a "
            "generator cannot be stored. Fix: return a list instead (collect what it yields: return [...])."
        )
    qualname = getattr(fn, "__qualname__", "")
    owner = qualname.rpartition(".")[0]
    if owner and not owner.endswith("<locals>"):
        raise DefinitionError(
            f"stage {name!r} is defined as a method of {owner!r}: stages are module-level functions (a "
            "method would need an instance nobody gives it). Fix: move it out of the class, to module level."
        )


def claim_name(fn: Callable[..., Any], name: str) -> None:
    """Record a stage name for the module being executed; a second stage of that name is an error."""
    module = getattr(fn, "__module__", None)
    frame: Any = sys._getframe(1)
    while frame is not None and not (frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == module):
        frame = frame.f_back
    if frame is None or not isinstance(module, str):
        return  # declared outside a module body (a function, a notebook cell): nothing to compare with
    body, names = _CLAIMED.get(module, (None, {}))
    if body is not frame.f_code:  # a new execution of the module (imported afresh, reloaded)
        body, names = frame.f_code, {}
        _CLAIMED[module] = (body, names)
    line = frame.f_lineno
    if name in names:
        raise DefinitionError(
            f"two stages are named {name!r} in {module} (lines {names[name]} and {line}); the second would "
            "silently replace the first. Fix: rename one of the functions, or give one name=..."
        )
    names[name] = line
