"""Process lifetime and identity, for every part of the orchestrator that starts or watches processes.

What ties other processes' lifetimes to this one's: :func:`die_with_parent` (Linux
``PR_SET_PDEATHSIG``), :func:`forkserver` (a forkserver that dies with the process that started
it), :func:`tie_pool_worker` (a pool worker that dies with its pool and leaves Ctrl-C to the
driver) and :func:`stop_pool` (a pool stopped now, not when its tasks end). And what names a
process across time: :func:`this_process` (host, user, pid, start time), :func:`process_alive`
(is the process that wrote a record still running, or was its pid reused), :func:`alive`.
The process table is read from ``/proc`` (Linux).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing.context import BaseContext

logger = logging.getLogger(__name__)

__all__ = ["LIFELINE", "ProcessInfo", "alive", "die_with_parent", "forkserver", "hostname", "process_alive",
           "process_started", "process_table", "this_process",
           "stop_pool", "tie_pool_worker"]

_PROC = Path("/proc")
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
LIFELINE = "orchestrator.lifeline"  # preloaded by a forkserver to die with the process that started it
POOL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL when a pool is stopped


def process_table() -> dict[int, tuple[int, int, int]]:
    """``pid -> (ppid, pgid, start_time)`` of every process, from ``/proc`` (empty elsewhere)."""
    table: dict[int, tuple[int, int, int]] = {}
    if not _PROC.is_dir():
        return table
    for entry in os.scandir(_PROC):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                raw = handle.read()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        if len(fields) > 19 and fields[0] != b"Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[19]))
    return table


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process: not gone, and not a zombie (dead, not reaped yet).

    Read from ``/proc/PID/stat`` (Linux). Where that cannot be read (another system, or a
    ``/proc`` mounted with ``hidepid``), whether the pid exists at all.
    """
    if pid <= 0:
        return False
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process
            return True
        return True
    return raw[raw.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Have Linux send this process ``sig`` when the *thread* that started it ends (``PR_SET_PDEATHSIG``).

    The thread, not the process: a child started from a thread other than the main one gets
    the signal when that thread ends. It covers a death from now on only: the caller checks
    that its parent is still there afterwards. The setting is cleared in children this process
    forks, and kept across ``exec``.

    Returns:
        Whether it was set (False elsewhere than Linux, or without ``prctl``).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: pools are still stopped by their driver
        return False


def forkserver(preload: Sequence[str] = ()) -> BaseContext:
    """The ``forkserver`` multiprocessing context, its server started now, from this thread.

    A forkserver's workers hold its "alive" pipe open, so the standard library's server lives
    as long as they do, and they as long as it does: a driver killed with SIGKILL left both
    running. Started from the main thread, the server preloads :data:`LIFELINE`, which ties
    it to this process (:func:`die_with_parent`); workers tie themselves to the server
    (:func:`tie_pool_worker`). From another thread the server is not tied: it would die with
    that thread. A server already running is kept as it is.

    Args:
        preload: Modules the server imports once, so that workers start with them imported.
    """
    context = multiprocessing.get_context("forkserver")
    tie = [LIFELINE] if threading.current_thread() is threading.main_thread() else []
    context.set_forkserver_preload([*tie, *preload])  # type: ignore[attr-defined]
    from multiprocessing import forkserver as server

    server.ensure_running()
    return context


def _interrupt_ignored(signum: int, frame: FrameType | None) -> None:
    """SIGINT in a pool worker: the driver decides what Ctrl-C means (a handler, not SIG_IGN, which
    programs the stage starts would inherit)."""


def tie_pool_worker() -> None:
    """In a pool worker's initializer: die with the pool, and leave Ctrl-C to the driver.

    The worker gets SIGKILL when its parent ends: the forkserver, which dies with the driver
    (:func:`forkserver`), or the driver itself for spawned workers. If the driver is already
    gone, the worker exits at once. SIGINT is caught and dropped: Ctrl-C in a terminal reaches
    every process of the foreground group, and a worker that took it for its own would fail
    the task at hand and go on with the next; the driver stops its pools instead (:func:`stop_pool`).
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupt_ignored)
    if not die_with_parent(signal.SIGKILL):
        return
    owner = multiprocessing.parent_process()
    if owner is not None and owner.pid is not None and not alive(owner.pid):
        os._exit(1)  # the driver died before the signal was set: it would never come


def stop_pool(pool: ProcessPoolExecutor, grace: float = POOL_GRACE) -> None:
    """Stop ``pool`` now: drop its queued tasks, SIGTERM its workers, SIGKILL those left after ``grace`` s.

    For a pool whose results nobody will read (Ctrl-C, an error): ``shutdown(wait=True)`` waits
    for the running tasks, forever for a hung one. The pool's futures end with ``BrokenProcessPool``.
    """
    from multiprocessing.connection import wait

    workers: list[Any] = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before 3.14
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            worker.terminate()
    left = _sentinels(workers)
    deadline = time.monotonic() + grace
    while left and time.monotonic() < deadline:
        for ready in wait(list(left), timeout=max(0.0, deadline - time.monotonic())):
            left.pop(ready, None)
    for worker in left.values():
        logger.warning("pool worker %s did not stop on SIGTERM within %.1f s; killing it", worker.pid, grace)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            worker.kill()
    if manager is not None and manager is not threading.current_thread():
        manager.join(timeout=grace)  # it sees the workers gone, fails the pool's futures and ends


def _sentinels(workers: list[Any]) -> dict[Any, Any]:
    found = {}
    for worker in workers:
        with contextlib.suppress(ValueError):  # a worker that was never started, or closed
            found[worker.sentinel] = worker
    return found


@dataclass(frozen=True)
class ProcessInfo:
    """The process doing a run, enough to tell later whether it is still alive."""

    host: str
    user: str
    pid: int
    start: str  # the process start time in clock ticks since boot (Linux), "" elsewhere


def _start_ticks(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # the command name (field 2) may contain spaces; fields after its closing parenthesis are fixed
    fields = text.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


@functools.cache
def process_started() -> float:
    """When this process started, in seconds since the epoch, never early (Linux: /proc); elsewhere, now.

    Boot time is given in whole seconds and the start in clock ticks: the sum is rounded up.
    """
    ticks = _start_ticks(os.getpid())
    try:
        with open("/proc/stat", "rb") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith(b"btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()
    if not ticks:
        return time.time()
    tick = 1 / os.sysconf("SC_CLK_TCK")
    return boot + int(ticks) * tick + 1.0 + tick


def hostname() -> str:
    """This machine's name."""
    return os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "")


def _user() -> str:
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, OSError):
        return ""


def this_process() -> ProcessInfo:
    """Host, user, pid and start time of the current process."""
    return ProcessInfo(hostname(), _user(), os.getpid(), _start_ticks(os.getpid()))


def process_alive(host: str, pid: int | None, start: str) -> bool | None:
    """Whether the process that wrote a run is still running: None when it ran on another host."""
    if host != hostname():
        return None
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start and _start_ticks(pid) not in ("", start):
        return False  # the pid was reused by a newer process
    return True
