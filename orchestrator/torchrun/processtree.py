"""A supervised child process tree: stream its output, enforce a timeout, leave no orphans.

:func:`run_supervised` starts a command in its own session (``start_new_session=True``),
hands every output line to a callback as it comes, and on a timeout, an error or Ctrl-C
stops the *whole tree*: SIGTERM, a grace period, then SIGKILL. The tree is tracked through
the process table while it runs, because launchers such as torchrun start each worker in
a session of its own, out of reach of a signal to the launcher's process group.

The tree is read from ``/proc`` (Linux); elsewhere only the command's own process group
is signalled. While it waits (in the main thread), a SIGTERM or SIGHUP that would
otherwise kill this process without any cleanup first stops the tree, then takes its
default course.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

from ..processes import process_table

logger = logging.getLogger(__name__)

__all__ = ["ProcessOutcome", "run_supervised"]

_TRACK_EVERY = 0.5  # seconds between two scans of the process tree


@dataclass(frozen=True)
class ProcessOutcome:
    """How a supervised command ended.

    Attributes:
        returncode: The command's exit status (negative: killed by that signal).
        seconds: Wall time from start to exit.
        timed_out: The timeout expired and the tree was stopped.
        stopped: Processes of the tree that were still alive after the command itself
            ended (they were killed).
    """

    returncode: int
    seconds: float
    timed_out: bool = False
    stopped: int = 0




class _Tree:
    """The processes started under one root pid, remembered even after they are reparented."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.known: dict[int, tuple[int, int]] = {}  # pid -> (pgid, start_time)

    def refresh(self) -> None:
        table = process_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        stack = [self.root, *self.known]
        while stack:
            pid = stack.pop()
            for child in children.get(pid, ()):
                if child not in self.known:
                    self.known[child] = (table[child][1], table[child][2])
                    stack.append(child)

    def living(self) -> dict[int, tuple[int, int]]:
        table = process_table()
        return {pid: v for pid, v in self.known.items() if pid in table and table[pid][2] == v[1]}

    def signal(self, sig: int) -> int:
        """Send ``sig`` to every living process of the tree and to its process group."""
        own_group = os.getpgrp()
        targets = self.living()
        for pgid in {pgid for pgid, _ in targets.values()} - {own_group, 0, 1}:
            _quietly(os.killpg, pgid, sig)
        for pid in targets:
            _quietly(os.kill, pid, sig)
        return len(targets)


class _Signalled(BaseException):
    """A fatal signal arrived while a supervised tree was running."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _fatal_signals_raise() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into :class:`_Signalled` for the block, where they would kill us silently."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Signalled(signum)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _quietly(fn: Callable[[int, int], None], target: int, sig: int) -> None:
    try:
        fn(target, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_supervised(
    argv: Sequence[str],
    *,
    on_line: Callable[[str], None],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    grace: float = 5.0,
    stop: threading.Event | None = None,
) -> ProcessOutcome:
    """Run ``argv`` (never through a shell), streaming its merged stdout/stderr line by line.

    Args:
        argv: The command.
        on_line: Called with each output line (without its newline), from a reader thread.
        env: The environment (default: this process's).
        cwd: The working directory.
        timeout: Seconds before the tree is stopped (None: no limit).
        grace: Seconds between SIGTERM and SIGKILL when stopping the tree.
        stop: Set (from another thread) to stop the tree the same way, as a timeout would.

    Returns:
        The :class:`ProcessOutcome`.

    Raises:
        KeyboardInterrupt: after stopping the tree, when interrupted while waiting (likewise
            any error of ``on_line``).
        OSError: when the command cannot be started.
    """
    try:
        with _fatal_signals_raise():
            return _supervise(argv, on_line, env, cwd, timeout, grace, stop)
    except _Signalled as signalled:  # the tree is stopped: now die as the signal intended
        logger.warning("signal %d: stopped the process tree of %s", signalled.signum, argv[0])
        signal.raise_signal(signalled.signum)
        raise


def _supervise(argv: Sequence[str], on_line: Callable[[str], None], env: Mapping[str, str] | None,
               cwd: str | os.PathLike[str] | None, timeout: float | None, grace: float,
               stop: threading.Event | None = None) -> ProcessOutcome:
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv), cwd=cwd, env=None if env is None else dict(env), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    tree = _Tree(proc.pid)
    errors: list[BaseException] = []
    reader = threading.Thread(target=_pump, args=(proc, on_line, errors), name=f"output-{proc.pid}", daemon=True)
    reader.start()
    deadline = None if timeout is None else started + timeout
    timed_out = False
    try:
        while True:
            tree.refresh()
            step = _TRACK_EVERY if deadline is None else max(0.0, min(_TRACK_EVERY, deadline - time.monotonic()))
            try:
                proc.wait(timeout=step)
                break
            except subprocess.TimeoutExpired:
                pass
            if errors:
                raise errors[0]
            if stop is not None and stop.is_set():
                logger.info("stopping the process tree of pid %d on request", proc.pid)
                _stop(proc, tree, grace)
                break
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                logger.warning("pid %d ran past its %.0f s timeout; stopping its process tree", proc.pid, timeout)
                _stop(proc, tree, grace)
                break
    except BaseException:
        _stop(proc, tree, grace)
        reader.join(timeout=2)
        raise
    leftovers = tree.living()
    if leftovers:
        logger.warning("pid %d exited but left %d processes running; killing them", proc.pid, len(leftovers))
        _stop(proc, tree, grace)
    reader.join(timeout=5)
    if errors:
        raise errors[0]
    return ProcessOutcome(proc.returncode, time.monotonic() - started, timed_out, len(leftovers))


def _pump(proc: subprocess.Popen[bytes], on_line: Callable[[str], None], errors: list[BaseException]) -> None:
    assert proc.stdout is not None
    with proc.stdout:
        for raw in iter(proc.stdout.readline, b""):
            if errors:
                continue  # keep draining so the child never blocks on a full pipe
            try:
                on_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which stops the tree
                errors.append(exc)


def _stop(proc: subprocess.Popen[bytes], tree: _Tree, grace: float) -> None:
    """SIGTERM the tree, wait up to ``grace`` seconds, SIGKILL what is left, reap the root."""
    tree.refresh()
    if proc.poll() is None:
        _quietly(os.killpg, proc.pid, signal.SIGTERM)
    if tree.signal(signal.SIGTERM) or proc.poll() is None:
        end = time.monotonic() + grace
        while time.monotonic() < end and (proc.poll() is None or tree.living()):
            tree.refresh()
            time.sleep(0.05)
    tree.refresh()
    if proc.poll() is None:
        _quietly(os.killpg, proc.pid, signal.SIGKILL)
    tree.signal(signal.SIGKILL)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
        logger.error("pid %d did not exit after SIGKILL", proc.pid)
