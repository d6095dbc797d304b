"""Preloaded by every forkserver the orchestrator starts: the server dies with the process that started it.

Importing this module is its whole job (a forkserver's preload list runs nothing else), so the
library never imports it: only :func:`orchestrator.processes.forkserver` names it, for a server
started from the main thread. It sets ``PR_SET_PDEATHSIG`` (SIGKILL) on the server; the pool
workers the server forks tie themselves to it the same way, so a driver killed with SIGKILL (or
by the OOM killer) takes its whole pool with it. Should the driver die before this runs, the
server's "alive" pipe is already closed and the standard library's server exits on its own.
"""

from __future__ import annotations

from .processes import die_with_parent

die_with_parent()
