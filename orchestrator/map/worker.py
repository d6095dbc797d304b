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
from .segments import Piece, Segment, SegmentStore

__all__ = ["Chunk", "ChunkResult", "MapWorker", "Pieces", "PiecesDone", "WorkerSpec", "chunk_of",
           "forget_local_worker", "init_worker", "local_worker", "run_chunk"]


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


@dataclass(frozen=True)
class Pieces:
    """Content-defined segments sent together: ``(name, first position, items)`` each, and their items."""

    spans: tuple[tuple[str, int, int], ...]
    level: int
    values: list[Any]


@dataclass(frozen=True)
class PiecesDone:
    """What a worker did with :class:`Pieces`.

    Attributes:
        stored: The segments stored, by name.
        failures: The items that raised (their segments are not stored).
        done: Every segment run, as ``(name, items)``.
        results: The results of segments with failures (None where an item failed), and
            of stored ones too when the stage's own process ran them (so the output is
            assembled without reading them back); a pool worker sends no stored ones.
    """

    stored: tuple[tuple[str, Piece], ...]
    failures: tuple[ItemFailure, ...]
    done: tuple[tuple[str, int], ...]
    results: dict[str, list[Any]]


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

    def run_pieces(self, pieces: Pieces, *, keep: bool = False) -> PiecesDone:
        """Compute each segment (in one pass over its items when none fails) and store it whole.

        A segment with a failed item is not stored: its items run again with it next time.
        """
        if self.mismatch:
            return PiecesDone((), tuple(ItemFailure(start + i, "CodeChanged", self.mismatch, "")
                                        for _, start, count in pieces.spans for i in range(count)), (), {})
        call, mapper = self.caller(), self.mapper()
        stored: list[tuple[str, Piece]] = []
        failures: list[ItemFailure] = []
        kept: dict[str, list[Any]] = {}
        offset = 0
        for name, start, count in pieces.spans:
            values = pieces.values[offset:offset + count]
            offset += count
            try:
                results = mapper(values)
            except KeyboardInterrupt:
                raise
            except BaseException:  # find the failing items one by one, keep going
                results, failed = self._one_by_one(call, values, start)
                if failed:
                    failures += failed
                    kept[name] = results
                    continue
            stored.append((name, self.segments.write_piece(name, pieces.level, results)))
            if keep:
                kept[name] = results
        return PiecesDone(tuple(stored), tuple(failures), tuple((n, c) for n, _, c in pieces.spans), kept)

    def caller(self) -> Any:
        """The stage as a one-argument function of the item (its other arguments bound)."""
        positional = self._positional()
        if positional is None:
            mapped, bound = self.spec.mapped, self.kwargs
            return lambda item: self.stage.fn(**{mapped: item}, **bound)
        fn, rest = self.stage.fn, positional
        return lambda item: fn(item, *rest)

    def timed(self, values: list[Any], slow: float = float("inf")) -> tuple[float | None, list[Any]]:
        """Call the stage here on each value: the median seconds per call, and the results.

        Stops after a first call of ``slow`` seconds or more (no need to time more), and at the
        first item that raises: then the median is None and there are no results (the item is
        computed, and reported, with the others).
        """
        call = self.caller()
        results: list[Any] = []
        seconds: list[float] = []
        for value in values:
            began = time.perf_counter()
            try:
                results.append(call(value))
            except Exception:
                return None, []
            seconds.append(time.perf_counter() - began)
            if seconds[0] >= slow:
                break
        return (sorted(seconds)[len(seconds) // 2] if seconds else None), results

    def mapper(self) -> Any:
        """A function of a list of items returning their results, in one pass in C where it can."""
        positional = self._positional()
        if positional is None:
            call = self.caller()
            return lambda values: list(map(call, values))
        import itertools

        fn, rest = self.stage.fn, positional
        return lambda values: list(map(fn, values, *map(itertools.repeat, rest)))

    def _positional(self) -> tuple[Any, ...] | None:
        """The stage's other arguments in signature order when the item is its first parameter and every
        parameter can be passed by position (a call by position skips building a dict per item)."""
        import inspect

        parameters = list(inspect.signature(self.stage.fn).parameters.values())
        if not parameters or parameters[0].name != self.spec.mapped:
            return None
        rest = []
        for parameter in parameters:
            if parameter.kind not in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
                return None
            if parameter.name == self.spec.mapped:
                continue
            if parameter.name in self.kwargs:
                rest.append(self.kwargs[parameter.name])
            elif parameter.default is not parameter.empty:
                rest.append(parameter.default)
            else:
                return None
        if set(self.kwargs) - {p.name for p in parameters}:
            return None
        return tuple(rest)

    def _one_by_one(self, call: Any, values: list[Any], start: int) -> tuple[list[Any], list[ItemFailure]]:
        from ..errors import user_traceback

        results: list[Any] = []
        failures: list[ItemFailure] = []
        for position, value in enumerate(values, start):
            try:
                results.append(call(value))
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # an item that calls sys.exit() fails, the others go on
                message = str(exc) if isinstance(exc, Exception) else repr(exc)
                results.append(None)
                failures.append(ItemFailure(position, type(exc).__name__, message, user_traceback(exc)))
        return results, failures

    def run(self, chunk: Chunk | Pieces) -> Any:
        if isinstance(chunk, Pieces):
            return self.run_pieces(chunk)
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
_HERE: tuple[WorkerSpec, MapWorker] | None = None


def local_worker(spec: WorkerSpec) -> MapWorker:
    """The worker that runs ``spec``'s items in this process (built once per map: timing, then computing)."""
    global _HERE
    if _HERE is None or _HERE[0] is not spec:
        _HERE = (spec, MapWorker(spec, None))
    return _HERE[1]


def forget_local_worker() -> None:
    """Drop the in-process worker (its setup's objects and the stage's other inputs) after a map."""
    global _HERE
    _HERE = None


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


