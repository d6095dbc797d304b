"""The ``experiment`` console script, and when Python's cyclic garbage collector runs in it.

The library's own start-up (click, yaml, sqlite3, the orchestrator modules) allocates tens of
thousands of objects that live as long as the process, which trigger dozens of collections that
each scan them again. The script holds the collector off for that stretch, then takes what it
built out of the collector's view (:func:`gc.freeze`) and turns it back on, before any code of
the user's (stage modules and what they import, stages) runs: :func:`resume_gc`.

It also owns Ctrl-C for the whole process, and SIGTERM and SIGHUP, which are handled the
same way (what ``timeout``, ``docker stop``, SLURM preemption and a closed terminal send). The
first one raises ``KeyboardInterrupt`` as usual: the run stops its stages and pools, records itself as interrupted and exits with 130.
A second one, while that is under way, exits at once with 130 instead of raising again
inside the clean-up (where it would print the tracebacks of whatever thread or pool it
interrupted). What the process started still ends with it: pool workers and forkservers by
their parent-death signal (:mod:`orchestrator.processes`), and the run is listed as
interrupted, as after ``kill -9``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
from types import FrameType
from typing import Any

__all__ = ["main"]

_INTERRUPTS = [0]  # Ctrl-Cs received by this process


def main() -> Any:
    """Run the ``experiment`` command line."""
    gc.disable()
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # (not when started with SIGINT ignored)
        signal.signal(signal.SIGINT, _interrupted)
    for name in ("SIGTERM", "SIGHUP"):  # `timeout`, `docker stop`, SLURM preemption, a closed terminal
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) is signal.SIG_DFL:
            signal.signal(number, _interrupted)
    from .cli.startup import resume_gc

    try:
        from .cli import main as command

        return command(prog_name="experiment")
    finally:
        resume_gc()


def _interrupted(signum: int, frame: FrameType | None) -> None:
    """SIGINT: the first raises KeyboardInterrupt, the next ones end the process now."""
    _INTERRUPTS[0] += 1
    if _INTERRUPTS[0] == 1:
        raise KeyboardInterrupt
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # (it may be in the middle of a write of the main thread's)
            stream.flush()
    with contextlib.suppress(OSError):
        os.write(2, b"\ninterrupted again: exiting now\n")
    os._exit(130)
