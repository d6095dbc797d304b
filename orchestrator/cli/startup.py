"""When Python's cyclic garbage collector runs in the ``experiment`` process.

The library's own start-up (click, yaml, sqlite3, the orchestrator modules) allocates tens of
thousands of objects that live as long as the process, which trigger dozens of collections that
each scan them again. :func:`orchestrator.console.main` holds the collector off for that stretch;
the commands call :func:`resume_gc` before any code of the user's (stage modules and what they
import, stages) runs.
"""

from __future__ import annotations

import gc

__all__ = ["resume_gc"]


def resume_gc() -> None:
    """Turn the collector back on if :func:`main` held it off (a no-op otherwise)."""
    if not gc.isenabled():
        gc.freeze()  # what start-up built lives as long as the process: never scan it again
        gc.enable()
