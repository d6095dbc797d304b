"""The ``experiment`` console script, and when Python's cyclic garbage collector runs in it.

The library's own start-up (click, yaml, sqlite3, the orchestrator modules) allocates tens of
thousands of objects that live as long as the process, which trigger dozens of collections that
each scan them again. The script holds the collector off for that stretch, then takes what it
built out of the collector's view (:func:`gc.freeze`) and turns it back on, before any code of
the user's (stage modules and what they import, stages) runs: :func:`resume_gc`.
"""

from __future__ import annotations

import gc
from typing import Any

__all__ = ["main", "resume_gc"]


def main() -> Any:
    """Run the ``experiment`` command line."""
    gc.disable()
    try:
        from .cli import main as command

        return command(prog_name="experiment")
    finally:
        resume_gc()


def resume_gc() -> None:
    """Turn the collector back on if :func:`main` held it off (a no-op otherwise)."""
    if not gc.isenabled():
        gc.freeze()  # what start-up built lives as long as the process: never scan it again
        gc.enable()
