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
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..engine.options import MapEngine, MapOptions
from ..engine.task import FailureKind, Task, TaskError, TaskFailed
from ..project.declaration import Stage
from ..store.base import Store
from ..store.filehashes import FileHashes
from .failures import (
    ItemFailure,
    at_every_position,
    check_failures,
    failure_text,
)
from .items import Items, independent, split_items
from .pool import IN_PROCESS_SECONDS, PROBE_ITEMS, check_sendable, pool_size, run_on_pool, start_server
from .progress import MapProgress
from .segments import SegmentStore
from .worker import Chunk, ChunkResult, MapWorker, WorkerSpec, chunk_of, forget_local_worker, local_worker

logger = logging.getLogger(__name__)

__all__ = ["ItemFailure", "MapProgress", "MapWorker", "run_map"]  # the item failure and worker types re-exported

MAX_CHUNK = 1000
SEGMENT_MIN_ITEMS = 10_000  # fewer items: their bookkeeping costs under ~0.1 s, cache each one
SEGMENT_BELOW = 0.001  # seconds per item under which cache="auto" caches by segment
EARLY_SERVER_ITEMS = 1000  # a map with this many items to compute starts the pool's server before timing them
SLOW_FIRST_CALL = 0.1  # a first item this slow decides cache="auto" alone


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
    report = (lambda s: progress(task.node, s)) if progress else (lambda s: None)
    spec = WorkerSpec(task, mapped, stage.batch_size, dict(others))
    segments = SegmentStore(store, task.map_key)
    try:
        caching, per_item = _caching(stage, task.options.map, segments, value, spec)
        if caching == "segment":
            from .segmented import run_segmented

            _check_importable(stage)
            return run_segmented(task, stage, value, spec, store, ctx, report, per_item)
        return _run_items(task, stage, value, spec, segments, ctx, report, per_item)
    finally:
        forget_local_worker()


def _run_items(task: Task, stage: Stage, value: Any, spec: WorkerSpec, segments: SegmentStore, ctx: Any,
               report: Callable[[MapProgress], None], per_item: float | None) -> Any:
    """Item by item: hash each item, look it up, compute the missing ones."""
    store = segments.store
    mapped = spec.mapped
    hashes = FileHashes(store)
    items = split_items(value, stage=stage.name, artifact=mapped, file_hash=hashes.hash)
    hashes.save()
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
    report(state)
    failures: list[ItemFailure] = []
    if pending:
        _check_importable(stage)
        for result in _compute(spec, stage, items, list(pending.values()), task.options.map, per_item):
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


def _caching(stage: Stage, options: MapOptions, segments: SegmentStore, value: Any,
             spec: WorkerSpec) -> tuple[str, float | None]:
    """``item`` or ``segment`` caching for this run, and the seconds per item when they were measured.

    ``cache="auto"`` (the default) keeps what the map key was cached as before. A new map key
    of at least :data:`SEGMENT_MIN_ITEMS` items, without setup, devices or batches, times a few
    items here: under :data:`SEGMENT_BELOW` seconds each, it is cut into segments; else the map key
    notes it and is cached by item from then on (the timed items' results are stored as items).
    """
    chosen = str(stage.options.get("cache", "auto"))
    devices = options.devices or stage.options.get("devices")
    if chosen == "segment" and devices:
        logger.warning("%s: cache='segment' runs on the pool's processes, not on devices: cached by item on "
                       "the devices asked", stage.name)
        return "item", None
    if chosen != "auto":
        return chosen, None
    if devices or "setup" in stage.hooks or stage.batch_size or _length(value) < SEGMENT_MIN_ITEMS:
        return "item", None
    if segments.pieces():
        return "segment", None
    if segments.measured_slow():
        return "item", None
    _check_importable(stage)
    per_item, results = local_worker(spec).timed(_head_values(value, PROBE_ITEMS), slow=SLOW_FIRST_CALL)
    if per_item is None:  # an item raised: by item this time (it is reported with the others), timed next run
        return "item", None
    if per_item < SEGMENT_BELOW:
        logger.debug("map %s: %.2g s per item: cached by segment", stage.name, per_item)
        return "segment", per_item
    logger.debug("map %s: %.2g s per item: cached by item", stage.name, per_item)
    segments.note_slow(per_item)
    if results:  # computed already: stored as items
        head = split_items(_head(value, len(results)), stage=stage.name, artifact=spec.mapped,
                           file_hash=FileHashes(segments.store).hash)
        segments.write(head.hashes, results)
    return "item", per_item


def _length(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return 0


def _head(value: Any, count: int) -> Any:
    return value.iloc[:count] if type(value).__module__.startswith("pandas") else value[:count]


def _head_values(value: Any, count: int) -> list[Any]:
    """The first items as the stage receives them."""
    from .cuts import values_of

    return values_of(value, 0, count)


def _in_shard(item_hash: str, shard: Sequence[int]) -> bool:
    return int(item_hash[:8], 16) % shard[1] == shard[0] - 1


def _check_importable(stage: Stage) -> None:
    """Workers import the stage by module and name: a function defined inside a function cannot be."""
    if "<locals>" in stage.fn.__qualname__ or stage.fn.__qualname__ == "<lambda>":
        from ..errors import DefinitionError

        raise DefinitionError(f"map stage {stage.name!r} is defined inside a function; workers import stages "
                              "by module and name. Fix: define it at module level.")


def _compute(spec: WorkerSpec, stage: Stage, items: Items, positions: list[int],
             options: MapOptions, per_item: float | None) -> Iterator[ChunkResult]:
    devices = list(options.devices or stage.options.get("devices") or [])
    workers = len(devices) if devices else pool_size(stage, options.workers)
    local: MapWorker | None = None
    if per_item is not None and options.workers is None and per_item * len(positions) <= IN_PROCESS_SECONDS:
        local = local_worker(spec)  # timed already: quick enough to run here
    elif workers > 0 and not devices and "setup" not in stage.hooks and options.workers is None and per_item is None:
        # time a few items here first: when all of them would take less than starting a pool, run them here
        if workers > 1 and len(positions) >= EARLY_SERVER_ITEMS and options.engine is not MapEngine.DASK:
            start_server(stage)  # likely needed: it starts while the items are timed
        local = local_worker(spec)
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
        check_sendable(stage, spec.inputs, cloud=on_dask)
    if workers <= 0 or local is not None:
        worker = local or local_worker(spec)
        for chunk in chunks:
            yield worker.run(chunk)
        return
    yield from run_on_pool(spec, stage, chunks, workers, devices, on_dask)


def _chunks(items: Items, positions: list[int], workers: int, stage: Stage) -> list[Chunk]:
    """Fixed ``chunk_size`` chunks; by default ``n / (workers x 16)`` items each, then smaller towards the end
    (down to a quarter), so that workers finish together instead of one waiting on the last big chunk."""
    fixed = int(stage.options.get("chunk_size") or 0)
    size = fixed or max(1, min(MAX_CHUNK, math.ceil(len(positions) / (max(1, workers) * 16))))
    smallest = size if fixed else max(1, math.ceil(size / 4))
    step = stage.batch_size or 1
    chunks = []
    start = 0
    while start < len(positions):
        left = len(positions) - start
        take = max(smallest, min(size, math.ceil(left / (max(1, workers) * 4))))
        take = max(step, take - take % step)
        chunks.append(chunk_of(items, positions[start:start + take]))
        start += take
    return chunks


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
        results.append(independent(segment[entry[1]]))
    return results
