"""Fan chunks of a map stage out to worker processes (or to the stage's Dask cluster)."""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from ..engine.task import FailureKind, TaskError, TaskFailed
from ..project.declaration import Stage
from .worker import WorkerSpec, check_devices, init_worker, run_chunk

__all__ = ["IN_PROCESS_SECONDS", "PROBE_ITEMS", "check_sendable", "pool_size", "run_on_pool", "start_server"]

PROBE_ITEMS = 8  # items timed in the stage's process before choosing where the rest run
IN_PROCESS_SECONDS = 0.4  # when all items should take less, they run in the stage's process: a pool costs ~0.15 s


def pool_size(stage: Stage, given: int | None) -> int:
    """Worker processes for a map: ``--workers``, else the stage's ``resources={"cpus": N}``, else the usable cores."""
    if given is not None:
        return given
    from ..executors.resources import cpus, usable_cpus

    return int(cpus(stage.resources)) if "cpus" in stage.resources else usable_cpus()


def run_on_pool(spec: WorkerSpec, stage: Stage, chunks: Iterable[Any], workers: int, devices: list[Any],
                on_dask: bool) -> Iterator[Any]:
    """Each chunk's result as workers finish them; at most ``workers x (1 + prefetch)`` chunks in flight.

    Raises:
        TaskFailed: a worker process died.
    """
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from ..processes import stop_pool

    prefetch = int(stage.options.get("prefetch", 2))
    if on_dask:  # the chunks go to the stage's own cluster
        from .dask_chunks import run_chunks

        yield from run_chunks(spec, list(chunks), prefetch)
        return
    context: Any
    if devices:
        check_devices(stage.name, devices)
        context = multiprocessing.get_context("spawn")
    else:  # workers fork from a server that has already imported all this (and dies with this process)
        context = start_server(stage)
    queue = context.Queue() if devices else None
    for device in devices:
        queue.put(device)  # type: ignore[union-attr]
    in_flight = max(1, workers) * (1 + prefetch)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker, initargs=(spec, queue))
    running: set[Future[Any]] = set()
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


def start_server(stage: Stage) -> Any:
    """Start the fork server workers come from (it imports the stage's module), or keep the running one.

    Starting takes about 0.15 s, in the server's own process: called before the driver's own work
    (timing items, hashing), the two overlap.
    """
    from ..processes import forkserver

    return forkserver(["orchestrator.map.worker", "orchestrator.store.artifactio", "orchestrator.engine.context",
                       stage.module])


def check_sendable(stage: Stage, others: Mapping[str, Any], *, cloud: bool = False) -> None:
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
