"""Map-stage chunks as tasks of the Dask cluster the stage runs on (``--executor dask``).

A map stage that lands on a Dask worker does not start a process pool of its own there:
its chunks become tasks of the same cluster, so a map over 100,000 files uses every worker
of every node. The stage's task secedes from its worker thread while the chunks run
(``worker_client``), so it does not hold a slot the chunks need. Each worker process
builds the stage's map worker (inputs loaded, ``@stage.setup`` run) once and reuses it for
every chunk it gets; results go to the shared store as segments, and only segment ids come
back, as with the local pool.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

from ..engine.task import FailureKind, TaskError, TaskFailed

__all__ = ["run_chunks"]


_WORKERS: dict[tuple[str, str], Any] = {}  # (node, key) -> the MapWorker of this process
_LOCK = threading.Lock()


def run_chunks(spec: Any, chunks: list[Any], prefetch: int) -> Iterator[Any]:
    """Run ``chunks`` of the map stage described by ``spec`` on the cluster; yield their results.

    Raises:
        TaskFailed: a chunk's worker died (finished chunks are stored).
    """
    from distributed import wait, worker_client



    with worker_client() as client:
        shared = client.scatter(spec, broadcast=True, hash=False)  # once per worker, not once per chunk
        in_flight = max(1, sum(client.nthreads().values())) * (1 + prefetch)
        pending = iter(chunks)
        running: set[Any] = set()
        try:
            while True:
                for chunk in pending:
                    running.add(client.submit(_run, shared, chunk, pure=False))
                    if len(running) >= in_flight:
                        break
                if not running:
                    return
                done, still = wait(list(running), return_when="FIRST_COMPLETED")
                running = set(still)
                for future in done:
                    yield future.result()
        except TaskFailed:
            raise
        except Exception as exc:  # KilledWorker, a lost connection: the chunk's items were not stored
            raise TaskFailed(TaskError(FailureKind.WORKER, f"a Dask worker running map chunks failed ({type(exc).__name__}: "
                                      f"{exc}); finished chunks are stored. Fix: check the workers' memory and "
                                      "logs, then rerun to compute the rest.")) from exc
        finally:
            for future in running:
                future.cancel()


def _run(spec: Any, chunk: Any) -> Any:
    """One chunk in a Dask worker process, with that process's map worker for the stage."""
    from .worker import MapWorker

    key = (spec.task.node, spec.task.key)
    with _LOCK:
        worker = _WORKERS.get(key)
        if worker is None:
            _WORKERS.clear()  # one map stage's state at a time: the previous stage's model goes
            root = spec.task.project_root
            if root and root not in sys.path:
                sys.path.insert(0, root)
            worker = _WORKERS[key] = MapWorker(spec, None)
    return worker.run(chunk)
