"""Watch a process tree while it runs: peak memory per process, CPU used, CPU taken by others.

A sampling thread walks the tree from a root pid through ``/proc/<pid>/task/*/children``
every ``interval`` seconds and reads each process's ``VmHWM`` (its peak resident memory,
kept by the kernel, so a sample taken any time after the peak still sees it), its CPU
ticks and its command line. A process's last sample is at most ``interval`` before it
exits; the peak is exact unless memory grew only in that final moment.

``/proc/stat`` read at start and stop gives the machine's busy CPU over the window; minus
the tree's own CPU, that is the load other processes put on the machine meanwhile (this
machine is shared: a busy neighbour shows up here and explains a slow measurement).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ProcessInfo", "TreeMonitor", "machine_busy"]

TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class ProcessInfo:
    """What was seen of one process of the tree."""

    pid: int
    parent: int
    command: str
    peak_rss: int = 0  # bytes, VmHWM
    cpu: float = 0.0  # seconds of user + system time at the last sample
    samples: int = 0


def machine_busy() -> float:
    """Seconds of busy CPU (all cores) since boot, from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(v) for v in fields]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / TICK


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return found


def _sample(info: ProcessInfo) -> bool:
    try:
        status = Path(f"/proc/{info.pid}/status").read_text()
        stat = Path(f"/proc/{info.pid}/stat").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            info.peak_rss = max(info.peak_rss, int(line.split()[1]) * 1024)
            break
    after_name = stat.rsplit(")", 1)[1].split()
    info.cpu = (int(after_name[11]) + int(after_name[12])) / TICK  # utime, stime
    info.samples += 1
    return True


@dataclass
class TreeMonitor:
    """Samples the tree under ``root`` until :meth:`stop`; use as a context manager."""

    root: int
    interval: float = 0.05
    processes: dict[int, ProcessInfo] = field(default_factory=dict)
    seconds: float = 0.0
    busy: float = 0.0  # machine-wide busy CPU seconds over the window

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._started = 0.0
        self._busy0 = 0.0

    def __enter__(self) -> TreeMonitor:
        self._started = time.perf_counter()
        self._busy0 = machine_busy()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop sampling and close the window."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self.busy = machine_busy() - self._busy0
            self.seconds = time.perf_counter() - self._started

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        """Walk the tree once."""
        queue = [(self.root, 0)]
        while queue:
            pid, parent = queue.pop()
            info = self.processes.get(pid)
            if info is None:
                try:
                    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                except OSError:
                    continue
                info = self.processes[pid] = ProcessInfo(pid, parent, command)
            if _sample(info):
                queue += [(child, pid) for child in _children(pid)]

    @property
    def tree_cpu(self) -> float:
        """CPU seconds the tree used (as last sampled)."""
        return sum(p.cpu for p in self.processes.values())

    @property
    def others_cpu(self) -> float:
        """Average number of cores busy with processes outside the tree during the window."""
        if self.seconds <= 0:
            return 0.0
        return max(0.0, self.busy - self.tree_cpu) / self.seconds
