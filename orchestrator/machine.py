"""What this machine has for stages: its GPUs, the cores this process may use, its memory.

The inventory the one-node scheduler (:mod:`orchestrator.engine.admission`) hands out:

* GPUs from ``nvidia-smi`` (any machine with NVIDIA's driver has it), honouring a numeric
  ``CUDA_VISIBLE_DEVICES``, or the indices given with ``--gpus 0,1,2,3`` /
  ``[tool.orchestrator] gpus``. A GPU whose memory is already in use when first seen (above
  :data:`BUSY_MEMORY` of it) belongs to another process of the machine and counts as busy.
* Cores from this process's CPU affinity (a SLURM or cgroup allocation, not the whole node).
* Memory from the cgroup limit (v2, then v1), else the machine's total.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["BUSY_MEMORY", "RESERVED_ENV", "Gpu", "Inventory", "inventory", "memory_limit", "parse_gpus",
           "query_gpus", "usable_cpus"]

_CSV_FIELD = re.compile(r"(-?\d+(?:\.\d+)?)\s*(?:MiB|%|W)?", re.IGNORECASE)
_GPU_LINE = re.compile(r"^GPU (\d+):", re.MULTILINE)
BUSY_MEMORY = 0.05  # a GPU with more than this share of its memory in use is another process's
RESERVED_ENV = "ORCHESTRATOR_GPUS"  # set in a stage's process: the GPU indices the scheduler reserved for it


@dataclass(frozen=True)
class Gpu:
    """One GPU as ``nvidia-smi`` shows it: index, share of memory in use, utilization (%)."""

    index: int
    memory_used: float = 0.0
    utilization: float = 0.0

    @property
    def busy(self) -> bool:
        """In use by some other process of the machine."""
        return self.memory_used > BUSY_MEMORY


@dataclass(frozen=True)
class Inventory:
    """What the scheduler may hand out on this node.

    Attributes:
        gpus: Every GPU the run may use (busy ones included: they are reserved from the start).
        cpus: Cores this process may run on.
        memory: Bytes of memory (the cgroup limit, else the machine's).
    """

    gpus: tuple[Gpu, ...] = ()
    cpus: int = 1
    memory: int = 0

    def describe(self) -> str:
        """One line for logs: ``4 GPUs (0,1,2,3; 1 busy), 16 cores, 125.8 GiB``."""
        busy = [g.index for g in self.gpus if g.busy]
        gpus = (f"{len(self.gpus)} GPU{'s' if len(self.gpus) != 1 else ''} "
                f"({','.join(str(g.index) for g in self.gpus)}{f'; {len(busy)} busy' if busy else ''}), "
                if self.gpus else "no GPU, ")
        return f"{gpus}{self.cpus} cores, {self.memory / 1024**3:.1f} GiB"


def usable_cpus() -> int:
    """Cores this process may run on: its CPU affinity (a SLURM or cgroup allocation), not the whole node."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def memory_limit() -> int:
    """Bytes of memory this process's cgroup may use, else the machine's total (0 when unknown)."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 writes a huge number for "no limit"
            return int(text)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0


def query_gpus(env: Mapping[str, str] | None = None) -> list[Gpu]:
    """Visible GPUs via ``nvidia-smi``; empty when it is missing or fails (a CPU-only machine).

    Honours a numeric ``CUDA_VISIBLE_DEVICES`` in ``env`` (default: this process's environment).
    Without ``nvidia-smi`` (a container that lacks the tool), a numeric ``CUDA_VISIBLE_DEVICES``
    names the GPUs, taken as idle.
    """
    environ = env if env is not None else os.environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    allowed = ([int(p) for p in visible.split(",") if p.strip()]
               if visible is not None and all(p.strip().isdigit() for p in visible.split(",") if p.strip()) else None)
    tool = shutil.which("nvidia-smi", path=environ.get("PATH"))
    if tool is None:
        return [Gpu(i) for i in allowed or ()]
    gpus = _smi(tool)
    if allowed is not None:
        by_index = {g.index: g for g in gpus}
        gpus = [by_index[i] for i in allowed if i in by_index]
    return gpus


def _smi(tool: str) -> list[Gpu]:
    """What ``nvidia-smi`` says: its CSV query, else the ``GPU N:`` lines of ``nvidia-smi -L``."""
    query = [tool, "--query-gpu=index,memory.used,memory.total,utilization.gpu", "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("nvidia-smi failed (%s); treating this machine as CPU-only", exc)
        return []
    gpus = []
    for row in out.strip().splitlines():  # index, memory.used, memory.total[, utilization]: units ignored
        fields = [_CSV_FIELD.fullmatch(f.strip()) for f in row.split(",")]
        if len(fields) >= 3 and all(fields):
            index, used, total, *rest = (float(f.group(1)) for f in fields if f)
            gpus.append(Gpu(int(index), used / total if total else 0.0, rest[0] if rest else 0.0))
    if gpus or not out.strip():
        return gpus
    listed = _GPU_LINE.findall(out)  # a tool that answers every question with its list of GPUs
    if not listed:
        try:
            listed = _GPU_LINE.findall(subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=20,
                                                      check=True).stdout)
        except (OSError, subprocess.SubprocessError):
            return []
    return [Gpu(int(index)) for index in listed]


def parse_gpus(value: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"0,1,2,3"``, ``[0, 1]``, ``"none"`` (no GPU) or None (ask nvidia-smi) as indices.

    Raises:
        ValueError: not a list of GPU indices; the message has the fix.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("none", ""):
            return ()
        if text == "auto":
            return None
        parts: Sequence[object] = [p.strip() for p in text.split(",") if p.strip()]
    else:
        parts = list(value)
    indices = []
    for part in parts:
        if isinstance(part, bool) or not (isinstance(part, int) or (isinstance(part, str) and part.isdigit())):
            raise ValueError(f"GPUs {value!r}: {part!r} is not a GPU index. Fix: write them like 0,1,2,3 (or none).")
        indices.append(int(part))
    if len(set(indices)) != len(indices):
        raise ValueError(f"GPUs {value!r} names a GPU twice. Fix: list each index once.")
    return tuple(indices)


def inventory(gpus: str | Sequence[int] | None = None) -> Inventory:
    """This node's inventory; ``gpus`` (see :func:`parse_gpus`) overrides which GPUs the run may use."""
    chosen = parse_gpus(gpus)
    seen = query_gpus()
    if chosen is not None:
        by_index = {g.index: g for g in seen}
        found = [by_index.get(i, Gpu(i)) for i in chosen]
    else:
        found = seen
    busy = [g.index for g in found if g.busy]
    if busy:
        logger.warning("GPU%s %s already in use by another process (memory above %d%%): not handing %s out",
                       "s" if len(busy) > 1 else "", ",".join(map(str, busy)), BUSY_MEMORY * 100,
                       "them" if len(busy) > 1 else "it")
    return Inventory(tuple(found), usable_cpus(), memory_limit())
