"""Run a map stage: fan its items out to a process pool, cache each item's result.

The driver side (:func:`run_map`) splits the mapped input into items, looks each item up
in the segment index by (map key, item hash), and ships only the missing ones, in chunks,
to worker processes. Workers import the stage by module and name, run its setup once,
call it per item (or per batch), write each chunk's results as a segment to the store
and return only the segment's id and the failures, so results never travel back through
the pool and a crash loses at most the chunks in flight.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import pickle
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from ..engine.options import MapEngine, MapOptions
from ..engine.task import FailureKind, Task, TaskError, TaskFailed
from ..executors.resources import cpus, usable_cpus
from ..processes import forkserver, stop_pool
from ..project.declaration import Stage
from ..store.base import Store
from ..store.filehashes import FileHashes
from .failures import (
    ItemFailure,
    at_every_position,
    check_failures,
    failure_text,
)
from .items import Items, split_items
from .segments import SegmentStore
from .worker import (
    Chunk,
    ChunkResult,
    MapWorker,
    WorkerSpec,
    check_devices,
    chunk_of,
    init_worker,
    run_chunk,
)

logger = logging.getLogger(__name__)

__all__ = ["ItemFailure", "MapProgress", "MapWorker", "run_map"]  # the item failure and worker types re-exported

MAX_CHUNK = 1000
PROBE_ITEMS = 8  # items timed in the stage's process before choosing where the rest run
IN_PROCESS_SECONDS = 0.4  # when all items should take less, they run in the stage's process: a pool costs ~0.15 s to start


@dataclass(frozen=True)
class MapProgress:
    """Where a map stage stands."""

    total: int
    cached: int
    computed: int
    failed: int
    started: float

    @property
    def done(self) -> int:
        """Items with a result or a failure."""
        return self.cached + self.computed + self.failed

    @property
    def rate(self) -> float:
        """Computed items per second."""
        elapsed = time.monotonic() - self.started
        return self.computed / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate."""
        left = self.total - self.done
        return left / self.rate if self.rate > 0 else None


def run_map(
    task: Task,
    stage: Stage,
    value: Any,
    others: Mapping[str, Any],
    store: Store,
    ctx: Any,
    progress: Callable[[str, MapProgress], None] | None = None,
) -> Any:
    """Compute the missing items of a map stage and return its assembled output.

    Raises:
        TaskFailed: items failed beyond what the stage accepts, a worker died, or this is
            a ``--shard`` run that stored its share but cannot assemble the whole.
    """
    mapped = stage.map_over or ""
    hashes = FileHashes(store)
    items = split_items(value, stage=stage.name, artifact=mapped, file_hash=hashes.hash)
    hashes.save()
    segments = SegmentStore(store, task.map_key)
    index = segments.index()
    shard = task.options.map.shard
    mine = range(len(items)) if shard is None else [p for p, h in enumerate(items.hashes) if _in_shard(h, shard)]
    pending: dict[str, int] = {}  # the first position of each item not stored yet (duplicates run once)
    copies: Counter[str] = Counter()  # positions per pending item: progress counts each, as failures do
    cached = 0
    for position in mine:
        item_hash = items.hashes[position]
        if item_hash in index:
            cached += 1
            continue
        pending.setdefault(item_hash, position)
        copies[item_hash] += 1
    state = MapProgress(len(mine), cached, 0, 0, time.monotonic())
    report = (lambda s: progress(task.node, s)) if progress else (lambda s: None)
    report(state)
    failures: list[ItemFailure] = []
    if pending:
        _check_importable(stage)
        spec = WorkerSpec(task, mapped, stage.batch_size, dict(others))
        for result in _compute(spec, stage, items, list(pending.values()), task.options.map):
            if result.segment is not None:
                for position, item_hash in enumerate(result.segment.items):
                    index[item_hash] = (result.segment.object, position)
            failures += result.failures
            computed = sum(copies[h] for h in result.segment.items) if result.segment else 0
            raised = sum(copies[items.hashes[f.index]] for f in result.failures)
            state = MapProgress(state.total, state.cached, state.computed + computed, state.failed + raised,
                                state.started)
            report(state)
    if failures:
        failures = at_every_position(failures, items.hashes, mine)
        ctx.report("item failures", failure_text(failures, len(items)))
    check_failures(stage, task, failures, len(items))  # a shard's own failed items fail it too
    if shard is not None:
        failed = {f.index for f in failures}
        missing = [p for p, h in enumerate(items.hashes) if h not in index and p not in failed]
        if missing:
            raise TaskFailed(TaskError(FailureKind.SHARDED, f"shard {shard[0]}/{shard[1]}: {len(mine)} of {len(items)} items "
                                      f"are this shard's and are stored; {len(missing)} items still need other "
                                      "shards"))
    return items.assemble(_results(items, index, segments), stage.outputs[0])


def _in_shard(item_hash: str, shard: Sequence[int]) -> bool:
    return int(item_hash[:8], 16) % shard[1] == shard[0] - 1


def _check_importable(stage: Stage) -> None:
    """Workers import the stage by module and name: a function defined inside a function cannot be."""
    if "<locals>" in stage.fn.__qualname__ or stage.fn.__qualname__ == "<lambda>":
        from ..errors import DefinitionError

        raise DefinitionError(f"map stage {stage.name!r} is defined inside a function; workers import stages "
                              "by module and name. Fix: define it at module level.")


def _check_sendable(stage: Stage, others: Mapping[str, Any], *, cloud: bool = False) -> None:
    """The stage's other inputs go to every worker process: they must pickle (items are checked as hashed).

    A process pool sends them with pickle; Dask (``cloud``) with cloudpickle, which also takes
    lambdas and functions defined in a notebook.
    """
    from ..errors import DefinitionError

    dumps = pickle.dumps
    if cloud:
        import cloudpickle

        dumps = cloudpickle.dumps
    for name, value in others.items():
        try:
            dumps(value, protocol=5)
        except Exception as exc:
            raise DefinitionError(
                f"map stage {stage.name!r}: its input {name!r} ({type(value).__name__}) cannot be sent to worker "
                f"processes ({type(exc).__name__}: {exc}). Fix: make {name!r} plain data, build the object in a "
                f"@{stage.name}.setup function, or run the items in-process with --workers 0."
            ) from exc


def _compute(spec: WorkerSpec, stage: Stage, items: Items, positions: list[int],
             options: MapOptions) -> Iterator[ChunkResult]:
    devices = list(options.devices or stage.options.get("devices") or [])
    default = int(cpus(stage.resources)) if "cpus" in stage.resources else usable_cpus()
    workers = len(devices) if devices else (default if options.workers is None else options.workers)
    local: MapWorker | None = None
    if workers > 0 and not devices and "setup" not in stage.hooks and options.workers is None:
        # time a few items here first: when all of them would take less than starting a pool, run them here
        local = MapWorker(spec, None)
        step = stage.batch_size or PROBE_ITEMS
        probed = local.run(chunk_of(items, positions[:step]))
        calls = sorted(local.call_seconds)  # the median call: the first one pays for warm-up
        per_item = calls[len(calls) // 2] / (stage.batch_size or 1) if calls else 0.0
        yield probed
        positions = positions[step:]
        logger.debug("map %s: %.2g s per item, %d items left", stage.name, per_item, len(positions))
        if per_item * len(positions) > IN_PROCESS_SECONDS:
            local = None
    chunks = _chunks(items, positions, workers, stage)
    on_dask = options.engine is MapEngine.DASK and not devices
    if workers > 0 and local is None:
        _check_sendable(stage, spec.inputs, cloud=on_dask)
    if workers <= 0 or local is not None:
        worker = local or MapWorker(spec, None)
        for chunk in chunks:
            yield worker.run(chunk)
        return
    if on_dask:  # the chunks go to the stage's own cluster
        from .dask_chunks import run_chunks

        yield from run_chunks(spec, chunks, int(stage.options.get("prefetch", 2)))
        return
    context: Any
    if devices:
        check_devices(stage.name, devices)
        context = multiprocessing.get_context("spawn")
    else:  # workers fork from a server that has already imported all this (and dies with this process)
        context = forkserver(["orchestrator.map.worker", "orchestrator.store.artifactio", "orchestrator.engine.context",
                              stage.module])
    queue = context.Queue() if devices else None
    for device in devices:
        queue.put(device)  # type: ignore[union-attr]
    in_flight = max(1, workers) * (1 + int(stage.options.get("prefetch", 2)))
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker, initargs=(spec, queue))
    running: set[Future[ChunkResult]] = set()
    finished = False
    try:
        chunk_iter = iter(chunks)
        while True:
            for chunk in chunk_iter:
                running.add(pool.submit(run_chunk, chunk))
                if len(running) >= in_flight:
                    break
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
        finished = True
    except BrokenProcessPool as exc:
        raise TaskFailed(TaskError(FailureKind.WORKER, f"a map worker process died ({exc}); finished chunks are stored. "
                                  "Fix: check memory use of the stage, then rerun to compute the rest.")) from exc
    finally:
        if finished:
            pool.shutdown(wait=True, cancel_futures=True)
        else:  # Ctrl-C, a failure, or nobody reads on: chunks still running would only be waited for
            stop_pool(pool)


def _chunks(items: Items, positions: list[int], workers: int, stage: Stage) -> list[Chunk]:
    size = int(stage.options.get("chunk_size") or 0)
    if not size:
        size = max(1, min(MAX_CHUNK, math.ceil(len(positions) / (max(1, workers) * 16))))
    if stage.batch_size:
        size = max(stage.batch_size, size - size % stage.batch_size)
    return [chunk_of(items, positions[i:i + size]) for i in range(0, len(positions), size)]


def _results(items: Items, index: Mapping[str, tuple[str, int]], segments: SegmentStore) -> list[Any]:
    loaded: dict[str, list[Any] | None] = {}
    results: list[Any] = []
    for item_hash in items.hashes:
        entry = index.get(item_hash)
        if entry is None:
            results.append(None)  # an accepted failure
            continue
        if entry[0] not in loaded:
            loaded[entry[0]] = segments.load(entry[0])
        segment = loaded[entry[0]]
        if segment is None:
            raise TaskFailed(TaskError(FailureKind.CORRUPT, f"a stored segment of {items.kind} results was corrupt and has "
                                      "been dropped. Fix: rerun; only its items are recomputed."))
        results.append(_independent(segment[entry[1]]))
    return results


_ATOMS = (int, float, bool, type(None), complex)


def _independent(result: Any) -> Any:
    """An item's result sharing no object with another item's, so the output's bytes are scheduling-free.

    Items loaded from one segment may share objects (a constant string every call returned);
    pickle writes a shared object once and refers to it after. Which items share depended on
    how items were split into chunks (``--workers``, a resume, a shard): copying each result
    on its own gives every schedule the same output bytes.
    """
    if type(result) in _ATOMS:
        return result
    try:
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # a local function or class inside: the segment was written with cloudpickle
        import cloudpickle

        data = cloudpickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    return pickle.loads(data)
