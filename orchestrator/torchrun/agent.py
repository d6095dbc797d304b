"""The torchrun agent process: ``python -m orchestrator.torchrun.agent [torchrun arguments]``.

:mod:`orchestrator.torchrun.launch` launches this instead of ``python -m torch.distributed.run``.
It runs torchrun's own ``main`` (same arguments, same behavior) after two changes that
concern this process only:

* It dies with the orchestrator. ``PR_SET_PDEATHSIG`` (Linux) sends it SIGTERM, which
  torchrun forwards to every rank, when the process that launched it dies, even by
  SIGKILL. ``ORCHESTRATOR_PARENT_PID`` names that process; if it is already gone, the
  agent exits at once.
* With ``ORCHESTRATOR_LOOPBACK=1`` (single-node launches), every store server listens on
  127.0.0.1 only (:func:`orchestrator.torchrun.loopback.install`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

from ..processes import die_with_parent

__all__ = ["LOOPBACK_ENV", "PARENT_ENV", "STOP_GRACE", "main", "tie_to_parent"]

PARENT_ENV = "ORCHESTRATOR_PARENT_PID"
LOOPBACK_ENV = "ORCHESTRATOR_LOOPBACK"


STOP_GRACE = 10.0  # seconds torchrun gets to stop its ranks once the launching process is gone


def tie_to_parent(grace: float = STOP_GRACE) -> None:
    """Get SIGTERM when the launching process dies; exit now if it already has (Linux only).

    torchrun answers that SIGTERM by stopping its ranks and exiting. Should it hang doing so (seen
    once in 38 kills of the kill -9 loop: an agent left running after its ranks were gone), a
    watchdog thread ends the agent ``grace`` seconds after the launching process died.
    """
    expected = os.environ.get(PARENT_ENV)
    if not expected or not die_with_parent(signal.SIGTERM):  # (Linux only; elsewhere the launcher cleans up)
        return
    if os.getppid() != int(expected):
        sys.exit(f"orchestrator.torchrun.agent: the launching process {expected} is gone; not starting")

    def watch() -> None:
        while os.getppid() == int(expected):
            time.sleep(0.5)
        time.sleep(grace)
        os._exit(128 + signal.SIGTERM)  # (the ranks got torchrun's SIGTERM, or their own parent-death signal)

    threading.Thread(target=watch, name="orchestrator-parent-watch", daemon=True).start()


def _parse_args(args: list[str] | None) -> Any:
    """torchrun's arguments, without abbreviations: a script argument such as ``--n`` or
    ``--lr`` after the script path belongs to the script, never to a torchrun option it
    happens to prefix (``--nnodes``, ``--local-ranks-filter``)."""
    from torch.distributed.run import get_args_parser

    parser = get_args_parser()
    parser.allow_abbrev = False
    return parser.parse_args(args)


def main() -> None:
    """Run torchrun with the arguments in ``sys.argv``, then exit at once.

    Exiting through ``os._exit`` skips the interpreter's join of torchrun's log-tailing
    threads: when the SIGTERM of a dying orchestrator lands while torchrun shuts its
    workers down, those threads are never told to stop, and a normal exit would wait for
    them forever (an orphan agent, seen in the kill -9 loop).
    """
    tie_to_parent()
    if os.environ.get(LOOPBACK_ENV) == "1":
        from .loopback import install

        install()
    from torch.distributed import run as torchrun

    torchrun.parse_args = _parse_args  # torchrun's main() looks it up at call time
    code = 1
    try:
        torchrun.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            with contextlib.suppress(Exception):
                sys.stderr.write(f"{exc.code}\n")  # as the interpreter would for sys.exit("message")
    except BaseException:  # as an uncaught exception would: its traceback, exit status 1
        with contextlib.suppress(Exception):  # the reader may be gone (a broken pipe)
            traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


if __name__ == "__main__":
    main()
