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
from collections.abc import Callable, Iterator
from typing import Any

from ..engine.options import MapEngine
from ..engine.task import FailureKind, Task, TaskError, TaskFailed
from ..executors.resources import cpus, usable_cpus
from ..project.declaration import Stage
from ..store.base import Store
from ..store.filehashes import FileHashes
from .cuts import MAX_LEVEL, MIN_LEVEL, cut, fingerprint, level_for, values_of
from .failures import ItemFailure, check_failures, failure_text
from .items import ATOMS, assemble, independent
from .pool import check_sendable, run_on_pool
from .segments import Piece, SegmentStore
from .worker import Pieces, PiecesDone, WorkerSpec, local_worker

logger = logging.getLogger(__name__)

__all__ = ["run_segmented"]

IN_PROCESS_SECONDS = 0.4  # as for items: under this much work, a pool costs more than it saves
PROBE_ITEMS = 8


def run_segmented(task: Task, stage: Stage, value: Any, spec: WorkerSpec, store: Store, ctx: Any,
                  report: Callable[[Any], None], per_item: float | None) -> Any:
    """Compute the missing segments of a map stage and return its assembled output.

    ``per_item`` is the measured seconds per item when the caller timed some already.

    Raises:
        TaskFailed: items failed beyond what the stage accepts, a worker died, or this is
            a ``--shard`` run that stored its share but cannot assemble the whole.
    """
    from .driver import MapProgress

    started = time.monotonic()
    hashes = FileHashes(store)
    prints = fingerprint(value, hashes.hash)
    hashes.save()
    segments = SegmentStore(store, task.map_key)
    stored = segments.pieces()
    options = task.options.map
    workers = _workers(stage, options.workers)
    size = int(stage.options.get("chunk_size") or 0)  # chunk_size=N: segments of about N items
    level = min(MAX_LEVEL, max(MIN_LEVEL, round(math.log2(size)))) if size else _level(stored)
    if level is None:
        per_item = per_item if per_item is not None else _time_items(spec, values_of(value, 0, PROBE_ITEMS))
        level = level_for(per_item, len(prints), workers)
    bounds = cut(prints, level)
    names = [prints.name(start, end) for start, end in bounds]
    shard = options.shard
    mine = [i for i, name in enumerate(names) if shard is None or int(name[:8], 16) % shard[1] == shard[0] - 1]
    missing = {names[i] for i in mine if not _intact(segments, names[i], stored)}
    todo: dict[str, int] = {}  # each missing segment once (equal content, one computation)
    copies: Counter[str] = Counter(names[i] for i in mine if names[i] in missing)
    for i in mine:
        if names[i] in missing:
            todo.setdefault(names[i], i)
    total = sum(bounds[i][1] - bounds[i][0] for i in mine)
    pending_items = sum(bounds[i][1] - bounds[i][0] for i in todo.values())
    state = MapProgress(total, total - sum(bounds[i][1] - bounds[i][0] for i in mine if names[i] in missing),
                        0, 0, started)
    report(state)
    logger.debug("map %s: %d segments (level %d), %d to compute (%d items)", stage.name, len(bounds), level,
                 len(todo), pending_items)
    failures: list[ItemFailure] = []
    kept: dict[str, list[Any]] = {}
    if todo:
        groups = [Pieces(((names[i], bounds[i][0], bounds[i][1] - bounds[i][0]),), level,
                         values_of(value, *bounds[i])) for i in todo.values()]
        in_process = workers <= 0 or (options.workers is None and per_item is not None
                                      and per_item * pending_items <= IN_PROCESS_SECONDS)
        if not in_process and per_item is None and options.workers is None:
            per_item = _time_items(spec, groups[0].values[:PROBE_ITEMS])
            in_process = per_item * pending_items <= IN_PROCESS_SECONDS
        if not in_process:
            check_sendable(stage, spec.inputs, cloud=options.engine is MapEngine.DASK)
        for done in _compute(spec, stage, groups, workers, in_process, options.engine is MapEngine.DASK):
            for name, piece in done.stored:
                stored[name] = piece
            kept.update(done.results)
            failures += done.failures
            computed = sum(copies[name] * count for name, count in done.done) - len(done.failures)
            state = MapProgress(state.total, state.cached, state.computed + computed,
                                state.failed + len(done.failures), state.started)
            report(state)
    if failures:
        ctx.report("item failures", failure_text(failures, len(prints)))
    check_failures(stage, task, failures, len(prints), retried="only the segments that hold the failed ones")
    if shard is not None:
        left = [i for i, name in enumerate(names) if name not in stored and name not in kept]
        if left:
            raise TaskFailed(TaskError(FailureKind.SHARDED, f"shard {shard[0]}/{shard[1]}: {total} of {len(prints)} "
                                      f"items are this shard's and are stored; {len(left)} segments still need "
                                      "other shards"))
    return assemble(value, _results(segments, names, bounds, stored, kept), stage.outputs[0])


def _workers(stage: Stage, given: int | None) -> int:
    default = int(cpus(stage.resources)) if "cpus" in stage.resources else usable_cpus()
    return default if given is None else given


def _level(stored: dict[str, Piece]) -> int | None:
    """The level this map key was cut at before (the most used one): its segments keep matching."""
    if not stored:
        return None
    return Counter(piece.level for piece in stored.values()).most_common(1)[0][0]


def _intact(segments: SegmentStore, name: str, stored: dict[str, Piece]) -> bool:
    piece = stored.get(name)
    if piece is None:
        return False
    if segments.store.object_is_intact(piece.object):
        return True
    logger.warning("map segment %s of %s is missing or corrupt; its items will be recomputed", name[:12],
                   segments.map_key[:12])
    segments.forget_piece(name, piece)
    del stored[name]
    return False


def _time_items(spec: WorkerSpec, values: list[Any]) -> float:
    """Median seconds per call over a few items, run here (their results are dropped)."""
    worker = local_worker(spec)
    call = worker.caller()
    seconds = []
    for item in values:
        began = time.perf_counter()
        try:
            call(item)
        except Exception:  # it fails again when computed, and is reported then
            pass
        seconds.append(time.perf_counter() - began)
    return sorted(seconds)[len(seconds) // 2] if seconds else 0.0


def _compute(spec: WorkerSpec, stage: Stage, groups: list[Pieces], workers: int, in_process: bool,
             on_dask: bool) -> Iterator[PiecesDone]:
    if in_process:
        worker = local_worker(spec)
        for group in groups:
            yield worker.run_pieces(group, keep=True)
        return
    per_chunk = max(1, math.ceil(len(groups) / (max(1, workers) * 4)))
    chunks = [_joined(groups[i:i + per_chunk]) for i in range(0, len(groups), per_chunk)]
    yield from run_on_pool(spec, stage, chunks, workers, [], on_dask)


def _joined(groups: list[Pieces]) -> Pieces:
    """Segments sent to one worker together."""
    if len(groups) == 1:
        return groups[0]
    return Pieces(tuple(span for group in groups for span in group.spans), groups[0].level,
                  [value for group in groups for value in group.values])


def _results(segments: SegmentStore, names: list[str], bounds: list[tuple[int, int]], stored: dict[str, Piece],
             kept: dict[str, list[Any]]) -> list[Any]:

    results: list[Any] = []
    for name, (start, end) in zip(names, bounds):
        part = kept.get(name)
        if part is None and name in stored:
            part = segments.load(stored[name].object)
        if part is None or len(part) != end - start:
            if name in stored:
                raise TaskFailed(TaskError(FailureKind.CORRUPT, f"map segment {name[:12]} was corrupt and has been "
                                          "dropped. Fix: rerun; only its items are recomputed."))
            results.extend([None] * (end - start))  # accepted failures in a segment that was not stored
            continue
        if set(map(type, part)) <= ATOMS:
            results.extend(part)
        else:
            results.extend(independent(r) for r in part)
    return results

