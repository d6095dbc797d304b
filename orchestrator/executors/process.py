"""Run stages in a local process pool: independent stages (across sets and branches) in parallel."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import queue
import signal
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import FrameType
from typing import Any

from ..engine.task import Task, TaskResult
from ..engine.worker import execute
from ..processes import forkserver, stop_pool, tie_pool_worker
from .base import Executor
from .resources import usable_cpus

logger = logging.getLogger(__name__)

__all__ = ["ProcessExecutor"]

_RELAY_POLL = 0.2  # seconds between the progress relay's checks that the executor is closing


class ProcessExecutor(Executor):
    """A pool of ``jobs`` worker processes (forkserver); stages are shipped by module and name.

    A worker that dies breaks the pool: its tasks fail with kind ``"worker"`` (the driver
    retries them when the stage has ``retries=``) and the next task gets a fresh pool.
    Map stages report their progress from the workers through a queue, which a thread of
    the driver hands to :attr:`progress` (the live bar).

    Workers die with the driver, even one killed with SIGKILL (see
    :func:`orchestrator.processes.forkserver`), and ignore Ctrl-C. Closed while tasks are
    still running (Ctrl-C, an error in the driver), the executor stops its pools at once
    instead of waiting for those tasks (:func:`orchestrator.processes.stop_pool`).
    """

    name = "process"
    one_node = True

    def __init__(self, jobs: int | None = None, prefetch: int | None = None, **_: Any) -> None:
        self.capacity = max(1, int(jobs or usable_cpus()))
        # one task waits in the pool per worker: a worker that finishes starts the next at once (the round
        # trip through the driver costs 2-3 ms per task here, 5% of a 50 ms stage)
        self.prefetch = self.capacity if prefetch is None else max(0, int(prefetch))
        self.threads = max(1, usable_cpus() // self.capacity)  # each worker's share of the cores
        self._pool: ProcessPoolExecutor | None = None
        self._context: Any = None
        self._queue: Any = None
        self._reader: threading.Thread | None = None
        self._running: set[Future[TaskResult]] = set()  # tasks in a pool, not finished yet
        self._alone: set[ProcessPoolExecutor] = set()  # one-task pools of tasks whose pool broke under them
        self._closing = threading.Event()
        self._abandoned = threading.Event()  # closed with tasks running: the progress relay stops unfinished

    def _ensure(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._context = forkserver()  # (again: a server that died is started anew, from this thread)
            if self._queue is None:
                self._queue = self._context.Queue()
                self._reader = threading.Thread(target=self._relay, name="orchestrator-map-progress", daemon=True)
                self._reader.start()
            self._pool = ProcessPoolExecutor(self.capacity, mp_context=self._context, initializer=_init_worker,
                                             initargs=(self._queue, self.threads))
        return self._pool

    def _relay(self) -> None:
        while not self._abandoned.is_set():
            try:
                message = self._queue.get(timeout=_RELAY_POLL)
            except queue.Empty:
                continue
            if message is None:
                return
            if self.progress is not None:
                self.progress(*message)

    def submit(self, task: Task) -> Future[TaskResult]:
        outer: Future[TaskResult] = Future()
        try:
            inner = self._ensure().submit(_execute, task)
        except BrokenProcessPool:
            logger.warning("the process pool lost a worker; starting a new one")
            self._pool = None
            inner = self._ensure().submit(_execute, task)
        self._running.add(inner)
        inner.add_done_callback(lambda done: self._settle(task, done, outer))
        return outer

    def _settle(self, task: Task, done: Future[TaskResult], outer: Future[TaskResult]) -> None:
        """Pass a result on; a task whose pool broke under it gets one more try, alone."""
        self._running.discard(done)
        if done.cancelled():
            outer.cancel()
            return
        error = done.exception()
        if not isinstance(error, BrokenProcessPool) or self._closing.is_set():  # (a pool stopped on purpose)
            _chain(done, outer)
            return
        # the worker that died may have been running another stage: rerun this one in a process of its
        # own, so only the stage that kills its worker fails (and stages sharing the pool do not)
        logger.warning("%s [%s]: its process pool lost a worker; running it again in a process of its own",
                       task.stage, task.param_set)
        self._pool = None
        alone = ProcessPoolExecutor(1, mp_context=forkserver(), initializer=_init_worker,
                                    initargs=(self._queue, self.threads))
        self._alone.add(alone)
        retry = alone.submit(_execute, task)
        self._running.add(retry)

        def finish(finished: Future[TaskResult]) -> None:
            self._running.discard(finished)
            self._alone.discard(alone)
            _chain(finished, outer)
            alone.shutdown(wait=False)

        retry.add_done_callback(finish)

    def close(self) -> None:
        """Shut the pools down; with tasks still running (the driver stopped waiting for them), stop them now."""
        abandoned = any(not future.done() for future in list(self._running))
        self._closing.set()
        if abandoned:
            self._abandoned.set()
        pools = [pool for pool in (self._pool, *list(self._alone)) if pool is not None]
        self._pool = None
        self._alone.clear()
        for pool in pools:
            if abandoned:
                stop_pool(pool)
            else:
                pool.shutdown(wait=True, cancel_futures=True)
        if self._queue is not None:
            if not abandoned:
                self._queue.put(None)  # after every message the workers sent (a stopped worker may hold its lock)
            if self._reader is not None:
                self._reader.join(timeout=5 if not abandoned else 2 * _RELAY_POLL)
            if self._reader is None or not self._reader.is_alive():
                self._queue.close()
            self._queue = None


def _chain(source: Future[TaskResult], target: Future[TaskResult]) -> None:
    if source.cancelled():
        target.cancel()
        return
    error = source.exception()
    if error is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


_PROGRESS: Any = None  # in a worker process: the queue to the driver
_BUSY = False  # in a worker process: a task is running
_STOPPING = False  # in a worker process: the driver is stopping the pool (SIGTERM)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def _init_worker(progress: Any, threads: int = 0) -> None:
    global _PROGRESS
    tie_pool_worker()
    signal.signal(signal.SIGTERM, _stop_requested)
    _PROGRESS = progress
    if threads:
        share_cores(threads)


def share_cores(threads: int) -> None:
    """Give this worker's thread pools its share of the cores: ``-j 2`` on 8 cores is 4 threads each.

    Without it every worker's BLAS, OpenMP and torch pools take every core, and two trainings
    at once run slower than one after the other. A variable the user set is left alone.
    """
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))
    torch = sys.modules.get("torch")
    if torch is not None and "OMP_NUM_THREADS" not in _USER_SET:
        with contextlib.suppress(Exception):
            torch.set_num_threads(threads)


_USER_SET = frozenset(name for name in THREAD_VARIABLES if name in os.environ)


def _stop_requested(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (:func:`orchestrator.processes.stop_pool`): a running stage stops as on Ctrl-C in the
    driver's process, so its ``finally`` blocks run and its own pools and process trees are stopped;
    then the worker exits (:func:`_execute`). An idle worker exits at once; one already stopping ignores
    a second request."""
    global _STOPPING
    if _STOPPING:  # asked again (the pool stopped twice): the clean-up under way ends the worker (its
        return  # semaphores released); raising again would break into it, and the driver's SIGKILL is the backstop
    if not _BUSY:
        os._exit(128 + signum)
    _STOPPING = True
    raise KeyboardInterrupt


def _report(node: str, state: Any) -> None:
    if _PROGRESS is not None:
        _PROGRESS.put((node, state))


def _execute(task: Task) -> TaskResult:
    global _BUSY
    _BUSY = True
    try:
        return execute(task, progress=_report)
    except KeyboardInterrupt:
        if not _STOPPING:
            raise
    finally:
        _BUSY = False
    # stopped: the stage's frames are gone; collecting them releases what they held (the semaphores of a map
    # pool, which the resource tracker would otherwise report as leaked) before the worker exits; what a
    # thread of that pool still holds is released by multiprocessing's own exit finalizers, run here as a
    # normal exit would (os._exit skips them)
    gc.collect()
    with contextlib.suppress(Exception):
        from multiprocessing import util

        util._run_finalizers(0)  # type: ignore[attr-defined]  # (semaphores: unlinked, unregistered)
    os._exit(128 + signal.SIGTERM)
