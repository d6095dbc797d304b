"""Run a map stage whose cheap items are cached by content-defined segment, not item by item.

The driver fingerprints every item in bulk (vectorized for numbers, arrays and pandas),
cuts the items into segments where the content says (:mod:`orchestrator.map.cuts`), looks
the segments up by name in one folder listing, and computes only the missing ones: in one
pass per segment (``map`` over the items), in the stage's own process when the rest is
quick, else on the pool. A crash loses at most the segments in flight; a changed or added
item recomputes the segments around it.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..engine.options import MapEngine
from ..engine.task import FailureKind, Task, TaskError, TaskFailed
from ..project.declaration import Stage
from ..store.base import Store
from ..store.filehashes import FileHashes
from .cuts import MAX_LEVEL, MIN_LEVEL, cut, fingerprint, level_for, values_of
from .failures import ItemFailure, check_failures, failure_text
from .items import ATOMS, assemble, independent
from .pool import IN_PROCESS_SECONDS, PROBE_ITEMS, check_sendable, pool_size, run_on_pool
from .progress import MapProgress
from .segments import Piece, SegmentStore
from .worker import Pieces, PiecesDone, WorkerSpec, local_worker

logger = logging.getLogger(__name__)

__all__ = ["run_segmented"]

POOL_START_SECONDS = 0.15  # a forkserver pool that imports the stage's module
TRANSFER_SECONDS = 1.5e-7  # per tiny item: pickled to a worker, its result stored and read back


def run_segmented(task: Task, stage: Stage, value: Any, spec: WorkerSpec, store: Store, ctx: Any,
                  report: Callable[[Any], None], per_item: float | None) -> Any:
    """Compute the missing segments of a map stage and return its assembled output.

    ``per_item`` is the measured seconds per item when the caller timed some already.

    Raises:
        TaskFailed: items failed beyond what the stage accepts, a worker died, or this is
            a ``--shard`` run that stored its share but cannot assemble the whole.
    """
    started = time.monotonic()
    segments = SegmentStore(store, task.map_key)
    stored = segments.pieces()
    options = task.options.map
    workers = pool_size(stage, options.workers)
    count, level, bounds, names = _layout(stage, value, spec, store, stored, workers, per_item)
    shard = options.shard
    mine = [i for i, name in enumerate(names) if shard is None or int(name[:8], 16) % shard[1] == shard[0] - 1]
    missing = {names[i] for i in mine if names[i] not in stored or not store.has_object(stored[names[i]].object)}
    todo = list({names[i]: i for i in reversed(mine) if names[i] in missing}.values())[::-1]  # first of equal ones
    copies: Counter[str] = Counter(names[i] for i in mine if names[i] in missing)
    total = sum(bounds[i][1] - bounds[i][0] for i in mine)
    pending = sum(bounds[i][1] - bounds[i][0] for i in todo)
    state = MapProgress(total, total - sum(bounds[i][1] - bounds[i][0] for i in mine if names[i] in missing),
                        0, 0, started)
    report(state)
    failures: list[ItemFailure] = []
    kept: dict[str, list[Any]] = {}
    if todo:
        here = "setup" not in stage.hooks  # (with a setup, timing here would run it here too: the pool does)
        if options.workers is None and per_item is None and here:
            per_item = _time_items(spec, values_of(value, bounds[todo[0]][0], bounds[todo[0]][0] + PROBE_ITEMS))
        in_process = workers <= 0 or (options.workers is None and here
                                      and _here_is_faster(per_item or 0.0, pending, workers))
        if not in_process:
            check_sendable(stage, spec.inputs, cloud=options.engine is MapEngine.DASK)
        groups = (Pieces(((names[i], bounds[i][0], bounds[i][1] - bounds[i][0]),), level, values_of(value, *bounds[i]))
                  for i in todo)
        chunks = groups if in_process else _joined(groups, max(1, math.ceil(len(todo) / (max(1, workers) * 4))))
        for done in _compute(spec, stage, chunks, workers, in_process, options.engine is MapEngine.DASK):
            stored.update(done.stored)
            kept.update(done.results)
            failures += done.failures
            computed = sum(copies[name] * items for name, items in done.done) - len(done.failures)
            state = MapProgress(state.total, state.cached, state.computed + computed,
                                state.failed + len(done.failures), state.started)
            report(state)
    ctx.report("map caching", f"Cached by segment: {count:,} items in {len(bounds):,} segments of about "
                              f"{1 << level:,} items (level {level}); {len(todo):,} segments computed "
                              f"({pending:,} items), {len(set(names[i] for i in mine) - missing):,} found stored.")
    if failures:
        ctx.report("item failures", failure_text(failures, count))
    check_failures(stage, task, failures, count, retried="only the segments that hold the failed ones")
    if shard is not None:
        left = [i for i, name in enumerate(names) if name not in stored and name not in kept]
        if left:
            raise TaskFailed(TaskError(FailureKind.SHARDED, f"shard {shard[0]}/{shard[1]}: {total} of {count} "
                                      f"items are this shard's and are stored; {len(left)} segments still need "
                                      "other shards"))
    rebuild = lambda i: local_worker(spec).run_pieces(  # noqa: E731 (a segment found corrupt when read)
        Pieces(((names[i], bounds[i][0], bounds[i][1] - bounds[i][0]),), level, values_of(value, *bounds[i])),
        keep=True)
    return assemble(value, _results(segments, names, bounds, stored, kept, rebuild), stage.outputs[0])


def _layout(stage: Stage, value: Any, spec: WorkerSpec, store: Store, stored: dict[str, Piece], workers: int,
            per_item: float | None) -> tuple[int, int, list[tuple[int, int]], list[str]]:
    """How many items, the cut level, and each segment's bounds and name (the fingerprints are dropped after)."""
    hashes = FileHashes(store)
    prints = fingerprint(value, hashes.hash)
    hashes.save()
    size = int(stage.options.get("chunk_size") or 0)  # chunk_size=N: segments of about N items
    level = min(MAX_LEVEL, max(MIN_LEVEL, round(math.log2(size)))) if size else _level(stored)
    if level is None:
        if per_item is None:  # with a setup, not timed here: segments of about a thousand items at most
            per_item = _time_items(spec, values_of(value, 0, PROBE_ITEMS)) if "setup" not in stage.hooks else 1e-3
        level = level_for(per_item, len(prints), workers)
    bounds = cut(prints, level)
    logger.debug("map %s: %d segments (level %d)", stage.name, len(bounds), level)
    return len(prints), level, bounds, prints.names(bounds)


def _here_is_faster(per_item: float, items: int, workers: int) -> bool:
    """Whether computing ``items`` in this process beats starting a pool, sending them and reading results back."""
    here = per_item * items
    pool = POOL_START_SECONDS + here / max(1, workers) + items * TRANSFER_SECONDS
    return here <= max(IN_PROCESS_SECONDS, pool)


def _level(stored: dict[str, Piece]) -> int | None:
    """The level this map key was cut at before (the most used one): its segments keep matching."""
    if not stored:
        return None
    return Counter(piece.level for piece in stored.values()).most_common(1)[0][0]


def _time_items(spec: WorkerSpec, values: list[Any]) -> float:
    """Median seconds per call over a few items, run here (their results are dropped; one that raises is
    computed, and reported, with the others)."""
    seconds, _ = local_worker(spec).timed(values)
    return seconds or 0.0


def _compute(spec: WorkerSpec, stage: Stage, chunks: Iterable[Pieces], workers: int, in_process: bool,
             on_dask: bool) -> Iterator[PiecesDone]:
    if in_process:
        worker = local_worker(spec)
        for chunk in chunks:
            yield worker.run_pieces(chunk, keep=True)
        return
    yield from run_on_pool(spec, stage, chunks, workers, [], on_dask)


def _joined(groups: Iterable[Pieces], per_chunk: int) -> Iterator[Pieces]:
    """Segments sent to one worker together, ``per_chunk`` at a time (built as the pool asks for more)."""
    batch: list[Pieces] = []
    for group in groups:
        batch.append(group)
        if len(batch) == per_chunk:
            yield _merged(batch)
            batch = []
    if batch:
        yield _merged(batch)


def _merged(groups: list[Pieces]) -> Pieces:
    if len(groups) == 1:
        return groups[0]
    return Pieces(tuple(span for group in groups for span in group.spans), groups[0].level,
                  [value for group in groups for value in group.values])


def _results(segments: SegmentStore, names: list[str], bounds: list[tuple[int, int]], stored: dict[str, Piece],
             kept: dict[str, list[Any]], rebuild: Callable[[int], PiecesDone]) -> list[Any]:
    """The output's results in input order (each segment's list dropped once copied in)."""
    results: list[Any] = []
    last = {name: i for i, name in enumerate(names)}  # a segment's results are dropped after its last use
    for i, (name, (start, end)) in enumerate(zip(names, bounds)):
        part = kept.pop(name, None) if last[name] == i else kept.get(name)
        if part is None and name in stored:
            part = segments.load_piece(name, stored[name])
            if part is None:  # corrupt: forgotten, computed again here
                again = rebuild(i)
                part = again.results.get(name)
                stored.update(again.stored)
            if part is not None and last[name] != i:
                kept[name] = part
        if part is None or len(part) != end - start:
            results.extend([None] * (end - start))  # accepted failures in a segment that was not stored
            continue
        if set(map(type, part)) <= ATOMS:
            results.extend(part)
        else:
            results.extend(independent(r) for r in part)
    return results
