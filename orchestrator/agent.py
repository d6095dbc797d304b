"""The torchrun agent process: ``python -m orchestrator.agent [torchrun arguments]``.

:mod:`orchestrator.torchrun` launches this instead of ``python -m torch.distributed.run``.
It runs torchrun's own ``main`` (same arguments, same behavior) after two changes that
concern this process only:

* It dies with the orchestrator. ``PR_SET_PDEATHSIG`` (Linux) sends it SIGTERM, which
  torchrun forwards to every rank, when the process that launched it dies, even by
  SIGKILL. ``ORCHESTRATOR_PARENT_PID`` names that process; if it is already gone, the
  agent exits at once.
* With ``ORCHESTRATOR_LOOPBACK=1`` (single-node launches), every store server listens on
  127.0.0.1 only (:func:`orchestrator.loopback.install`).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["LOOPBACK_ENV", "PARENT_ENV", "main", "tie_to_parent"]

PARENT_ENV = "ORCHESTRATOR_PARENT_PID"
LOOPBACK_ENV = "ORCHESTRATOR_LOOPBACK"
_PR_SET_PDEATHSIG = 1


def tie_to_parent() -> None:
    """Get SIGTERM when the launching process dies; exit now if it already has (Linux only)."""
    expected = os.environ.get(PARENT_ENV)
    if not expected or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: the launcher still cleans up
        return
    if os.getppid() != int(expected):
        sys.exit(f"orchestrator.agent: the launching process {expected} is gone; not starting")


def main() -> None:
    """Run torchrun with the arguments in ``sys.argv``."""
    tie_to_parent()
    if os.environ.get(LOOPBACK_ENV) == "1":
        from .loopback import install

        install()
    from torch.distributed.run import main as torchrun_main

    torchrun_main()


if __name__ == "__main__":
    main()
