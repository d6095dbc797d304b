"""The worker side of a map stage: run chunks of items, write each chunk's results as a segment.

A :class:`MapWorker` lives in one process (a pool worker, a Dask worker, or the stage's own
process for small maps). It imports the stage by module and name, loads the stage's other
inputs and runs its setup once, then calls the stage per item (or per batch). It returns only
the segment's id and the failures, so results never travel back through the pool.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.task import Task
from ..store.location import open_store
from .failures import ItemFailure
from .items import Items
from .segments import Segment, SegmentStore

__all__ = ["Chunk", "ChunkResult", "MapWorker", "WorkerSpec", "chunk_of", "init_worker", "run_chunk"]


@dataclass(frozen=True)
class WorkerSpec:
    """What a map worker process needs to run a stage's items (picklable)."""

    task: Task
    mapped: str
    batch_size: int | None
    inputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    positions: tuple[int, ...]
    hashes: tuple[str, ...]
    values: list[Any]


@dataclass(frozen=True)
class ChunkResult:
    segment: Segment | None
    failures: tuple[ItemFailure, ...]


def chunk_of(items: Items, block: list[int]) -> Chunk:
    """The items at positions ``block``, ready to send to a worker."""
    return Chunk(tuple(block), tuple(items.hashes[p] for p in block), [items.values[p] for p in block])


class MapWorker:
    """Runs chunks of one map stage in one process (setup runs once, at construction)."""

    def __init__(self, spec: WorkerSpec, device: Any) -> None:
        from ..engine.context import StageContext
        from ..engine.imported import code_mismatch, resolve_stage
        from ..store.artifactio import load_artifact

        task = spec.task
        self.spec = spec
        self.stage = resolve_stage(task.module, task.stage, task.code_root or task.project_root)
        # a pool process imports the stage afresh: an edit since the run planned it must not run
        self.mismatch = code_mismatch(task, self.stage)
        self.store = open_store(task.store)
        self.segments = SegmentStore(self.store, task.map_key)
        self.ctx = StageContext(stage=task.stage, param_set=task.param_set, params=task.set_values,
                                seed=task.seed, key=task.key, store=self.store,
                                project_root=Path(task.project_root))
        self.ctx.device = device
        kwargs = dict(spec.inputs)
        for input_spec in task.inputs:
            if input_spec.name != spec.mapped and input_spec.name not in kwargs:
                kwargs[input_spec.name] = load_artifact(self.store, input_spec.record, as_path=input_spec.as_path)
        kwargs.update({p.name: task.params[p.name] for p in self.stage.params})
        if self.stage.takes_ctx:
            kwargs["ctx"] = self.ctx
        self.kwargs = kwargs
        self.call_seconds: list[float] = []  # the last chunk's calls, each timed
        setup = self.stage.hooks.get("setup")
        if setup is not None:
            import inspect

            names = inspect.signature(setup).parameters
            arguments = {n: self.ctx if n == "ctx" else task.params[n] for n in names if n == "ctx" or n in task.params}
            self.ctx.worker = setup(**arguments)

    def run(self, chunk: Chunk) -> ChunkResult:
        results: list[Any] = []
        done: list[str] = []
        failures: list[ItemFailure] = []
        step = self.spec.batch_size or 1
        self.call_seconds = timed = []
        if self.mismatch:
            return ChunkResult(None, tuple(ItemFailure(p, "CodeChanged", self.mismatch, "") for p in chunk.positions))
        for start in range(0, len(chunk.values), step):
            values = chunk.values[start:start + step]
            positions = chunk.positions[start:start + step]
            called = time.perf_counter()
            try:
                if self.spec.batch_size:
                    out = list(self.stage.fn(**{self.spec.mapped: values}, **self.kwargs))
                    if len(out) != len(values):
                        raise ValueError(f"a batch of {len(values)} items returned {len(out)} results")
                else:
                    out = [self.stage.fn(**{self.spec.mapped: values[0]}, **self.kwargs)]
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # an item that calls sys.exit() fails, the others go on
                from ..errors import user_traceback

                text = user_traceback(exc)
                message = str(exc) if isinstance(exc, Exception) else repr(exc)
                failures += [ItemFailure(p, type(exc).__name__, message, text) for p in positions]
                continue
            timed.append(time.perf_counter() - called)
            results += out
            done += chunk.hashes[start:start + step]
        segment = self.segments.write(done, results) if done else None
        return ChunkResult(segment, tuple(failures))


_WORKER: MapWorker | None = None


def init_worker(spec: WorkerSpec, devices: Any) -> None:
    global _WORKER
    from ..processes import tie_pool_worker

    tie_pool_worker()  # dies with the driver, leaves Ctrl-C to it (it stops the pool)
    if spec.task.project_root and spec.task.project_root not in sys.path:
        sys.path.insert(0, spec.task.project_root)
    device = devices.get() if devices is not None else None
    _WORKER = MapWorker(spec, own_device(device))


def own_device(device: Any) -> Any:
    """Under the scheduler's GPU reservation, ``cuda:N`` is the N-th GPU the stage holds: this worker
    then sees only that one (``CUDA_VISIBLE_DEVICES``), as ``cuda:0``. Other devices pass unchanged."""
    import os
    import re

    from ..machine import RESERVED_ENV

    reserved = [g for g in os.environ.get(RESERVED_ENV, "").split(",") if g]
    match = re.fullmatch(r"cuda:(\d+)", str(device)) if reserved else None
    if match is None:
        return device
    os.environ["CUDA_VISIBLE_DEVICES"] = reserved[int(match.group(1))]  # (checked by check_devices)
    return "cuda:0"


def check_devices(stage: str, devices: list[Any]) -> None:
    """Every ``cuda:N`` of a device map is a GPU the stage holds (under the scheduler's reservation).

    Raises:
        ValueError: one is not; the message has the fix.
    """
    import os
    import re

    from ..machine import RESERVED_ENV

    reserved = [g for g in os.environ.get(RESERVED_ENV, "").split(",") if g]
    for device in devices if reserved else ():
        match = re.fullmatch(r"cuda:(\d+)", str(device))
        if match and int(match.group(1)) >= len(reserved):
            raise ValueError(f"{stage}: device {device} asked, but the stage holds {len(reserved)} GPU(s) "
                             f"({','.join(reserved)}). Fix: resources={{'gpus': {int(match.group(1)) + 1}}} on "
                             "the stage, or fewer devices.")


def run_chunk(chunk: Chunk) -> ChunkResult:
    assert _WORKER is not None, "map worker used before its initializer ran"
    return _WORKER.run(chunk)


