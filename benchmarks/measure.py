"""Run a command the way a user would and measure it: wall-clock seconds and peak memory.

Each measurement is one child process, reaped with ``os.wait4`` so its peak resident
memory (``ru_maxrss``) is that process's own, not the maximum over every child so far.
A timed-out command is killed with its whole process group.
Also: the private virtualenvs benchmarks install their baselines into.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

__all__ = ["Measurement", "best_of", "ensure_venv", "run_measured"]

VENVS = Path(__file__).resolve().parent / ".venvs"


@dataclass(frozen=True)
class Measurement:
    """One run of a command.

    Attributes:
        seconds: Wall-clock time from spawn to exit.
        cpu_seconds: CPU time it used (user + system): unlike wall clock, barely affected
            by other processes competing for the cores.
        peak_rss: The process's peak resident memory in bytes.
        returncode: Exit status, or None when it was killed at the timeout.
        stdout: What it printed (decoded, errors replaced).
        stderr: Its error output.
    """

    seconds: float
    cpu_seconds: float
    peak_rss: int
    returncode: int | None
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0."""
        return self.returncode == 0

    @property
    def timed_out(self) -> bool:
        """True when the command was killed at its timeout."""
        return self.returncode is None

    def tail(self, lines: int = 3) -> str:
        """The last lines of its error output (or output), for a failure report."""
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return " | ".join(line.strip() for line in text[-lines:])


def run_measured(
    command: Sequence[str],
    *,
    cwd: Path,
    timeout: float = 600.0,
    env: Mapping[str, str] | None = None,
) -> Measurement:
    """Run ``command`` in ``cwd`` and measure it; never raises for a failing command."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(list(command), cwd=cwd, env=dict(env) if env is not None else None,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Measurement(
            seconds=seconds,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            peak_rss=usage.ru_maxrss * 1024,  # KiB on Linux
            returncode=None if killed.is_set() else process.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


class Timed(Protocol):
    """Anything with a wall-clock time and a success flag (a Measurement, an Outcome)."""

    @property
    def seconds(self) -> float: ...

    @property
    def ok(self) -> bool: ...


T = TypeVar("T", bound=Timed)


def best_of(repeats: int, measure: Callable[[], T]) -> T:
    """Call ``measure`` ``repeats`` times and return the fastest run.

    The fastest run is the best estimate of a command's own cost on a shared machine, where
    other processes only ever add time. Stops at the first failed run and returns that one.
    """
    best: T | None = None
    for _ in range(max(1, repeats)):
        result = measure()
        if not result.ok:
            return result
        if best is None or result.seconds < best.seconds:
            best = result
    assert best is not None
    return best


def ensure_venv(name: str, requirements: Sequence[str], log: Callable[[str], None]) -> Path:
    """A private virtualenv under ``benchmarks/.venvs/NAME`` holding ``requirements``.

    Created with ``python3 -m venv`` and pip on first use; a ``.installed`` marker listing
    the requirements makes later calls free. Returns the venv's ``bin`` folder.

    Raises:
        RuntimeError: the install failed (pip's last lines are in the message).
    """
    folder = VENVS / name
    marker = folder / ".installed"
    wanted = "\n".join(requirements)
    if marker.is_file() and marker.read_text() == wanted:
        return folder / "bin"
    log(f"installing {' '.join(requirements)} into {folder} ...")
    python = "python3" if sys.prefix == sys.base_prefix else str(Path(sys.base_prefix) / "bin" / "python3")
    steps = [[python, "-m", "venv", str(folder)],
             [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise RuntimeError(f"{' '.join(step[:4])} ... failed:\n{tail}")
    marker.write_text(wanted)
    return folder / "bin"
