"""Capture what a stage prints and logs into its own log file, while still showing it."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import resource
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["capture", "console_only", "log_only", "peak_rss", "reset_peak_rss"]

_ACTIVE = threading.local()  # the log file of the capture running in this thread


HEAD = 8 << 20  # characters of a stage's output kept from its start...
TAIL = 2 << 20  # ...and from its end; what lies between is cut (the console still shows it all)


class _LazyFile:
    """A text file opened on first write, so stages that print nothing leave no file behind.

    A stage that prints without end (50 MB of progress lines) must not fill the run store:
    the log keeps the first :data:`HEAD` and the last :data:`TAIL` characters, and says
    how much it cut between them.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.handle: IO[str] | None = None
        self._lock = threading.Lock()  # the stage's thread and output readers (torchrun) both write
        self._written = 0
        self._tail: collections.deque[str] = collections.deque()
        self._tail_size = 0
        self._cut = 0

    def write(self, text: str) -> int:
        with self._lock:
            if self.handle is None:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self.handle = open(self.path, "a", encoding="utf-8", errors="replace")
            room = HEAD - self._written
            if room > 0:
                self.handle.write(text[:room])
                self._written += min(room, len(text))
            if len(text) > room:
                self._keep_tail(text[max(room, 0):])
            return len(text)

    def _keep_tail(self, text: str) -> None:
        self._tail.append(text)
        self._tail_size += len(text)
        while self._tail_size - len(self._tail[0]) >= TAIL:
            dropped = self._tail.popleft()
            self._tail_size -= len(dropped)
            self._cut += len(dropped)

    def flush(self) -> None:
        if self.handle is not None:
            self.handle.flush()

    def close(self) -> None:
        if self.handle is None:
            return
        with self._lock:
            if self._cut:
                self.handle.write(f"\n[... {self._cut:,} characters of output cut here: the log keeps the first "
                                  f"{HEAD:,} and the last {TAIL:,} ...]\n")
            self.handle.writelines(self._tail)
            self._tail.clear()
            self.handle.close()


class _Tee:
    """A text stream writing to the original stream and a log file."""

    def __init__(self, original: IO[str], log: _LazyFile) -> None:
        self.original = original
        self.log = log

    def write(self, text: str) -> int:
        if not getattr(_ACTIVE, "console_only", False):
            self.log.write(text)
        return self.original.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


@contextlib.contextmanager
def capture(path: str) -> Iterator[None]:
    """Tee stdout, stderr and log records (INFO and up) into ``path`` for the block's duration."""
    if not path:
        yield
        return
    log = _LazyFile(path)
    try:
        handler = logging.StreamHandler(log)  # type: ignore[arg-type]
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        previous_level = root.level
        lowered = root.level > logging.INFO or root.level == logging.NOTSET
        if lowered:  # (setLevel clears every logger's cache: only when needed)
            root.setLevel(logging.INFO)
        root.addHandler(handler)
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(out, log), _Tee(err, log)  # type: ignore[assignment]
        outer = getattr(_ACTIVE, "log", None)
        _ACTIVE.log = log
        try:
            yield
        finally:
            _ACTIVE.log = outer
            sys.stdout, sys.stderr = out, err
            root.removeHandler(handler)
            if lowered:
                root.setLevel(previous_level)
    finally:
        log.close()


def log_only() -> Callable[[str], None]:
    """A writer to the log of the stage being captured in this thread, not to the console.

    Call it in the stage's thread; the writer may then be used from any thread (a reader
    of a child's output). For output worth keeping but too much to show: a torchrun
    stage's other ranks. Outside a capture, the writer drops the text.
    """
    log = getattr(_ACTIVE, "log", None)
    return log.write if log is not None else (lambda text: None)


@contextlib.contextmanager
def console_only() -> Iterator[None]:
    """Writes in this block reach the console but not the stage's log (it has the record already)."""
    _ACTIVE.console_only = True
    try:
        yield
    finally:
        _ACTIVE.console_only = False


def reset_peak_rss() -> None:
    """Start measuring this process's peak memory afresh (Linux: the kernel's high-water mark)."""
    with contextlib.suppress(OSError):
        fd = os.open("/proc/self/clear_refs", os.O_WRONLY)
        try:
            os.write(fd, b"5")  # 5: reset the peak resident set size
        finally:
            os.close(fd)


def peak_rss() -> int:
    """Peak resident memory of this process since :func:`reset_peak_rss`, in bytes.

    Where ``/proc`` is missing, the peak over the whole process life (``getrusage``).
    """
    with contextlib.suppress(OSError, ValueError):
        fd = os.open("/proc/self/status", os.O_RDONLY)
        try:
            status = os.read(fd, 1 << 16)  # one read: no text layer (this runs once per stage)
        finally:
            os.close(fd)
        start = status.find(b"\nVmHWM:")
        if start >= 0:
            return int(status[start + 7 : status.index(b"kB", start)]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
