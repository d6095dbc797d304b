"""Run stages in a local process pool: independent stages (across sets and branches) in parallel."""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..task import Task, TaskResult
from ..worker import execute
from .base import Executor
from .resources import usable_cpus

logger = logging.getLogger(__name__)

__all__ = ["ProcessExecutor"]


class ProcessExecutor(Executor):
    """A pool of ``jobs`` worker processes (forkserver); stages are shipped by module and name.

    A worker that dies breaks the pool: its tasks fail with kind ``"worker"`` (the driver
    retries them when the stage has ``retries=``) and the next task gets a fresh pool.
    Map stages report their progress from the workers through a queue, which a thread of
    the driver hands to :attr:`progress` (the live bar).
    """

    name = "process"

    def __init__(self, jobs: int | None = None, **_: Any) -> None:
        self.capacity = max(1, int(jobs or usable_cpus()))
        self._pool: ProcessPoolExecutor | None = None
        self._context = multiprocessing.get_context("forkserver")
        self._queue: Any = None
        self._reader: threading.Thread | None = None

    def _ensure(self) -> ProcessPoolExecutor:
        if self._pool is None:
            if self._queue is None:
                self._queue = self._context.Queue()
                self._reader = threading.Thread(target=self._relay, name="orchestrator-map-progress", daemon=True)
                self._reader.start()
            self._pool = ProcessPoolExecutor(self.capacity, mp_context=self._context, initializer=_init_worker,
                                             initargs=(self._queue,))
        return self._pool

    def _relay(self) -> None:
        while True:
            message = self._queue.get()
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
        inner.add_done_callback(lambda done: self._settle(task, done, outer))
        return outer

    def _settle(self, task: Task, done: Future[TaskResult], outer: Future[TaskResult]) -> None:
        """Pass a result on; a task whose pool broke under it gets one more try, alone."""
        if done.cancelled():
            outer.cancel()
            return
        error = done.exception()
        if not isinstance(error, BrokenProcessPool):
            _chain(done, outer)
            return
        # the worker that died may have been running another stage: rerun this one in a process of its
        # own, so only the stage that kills its worker fails (and stages sharing the pool do not)
        logger.warning("%s [%s]: its process pool lost a worker; running it again in a process of its own",
                       task.stage, task.param_set)
        self._pool = None
        alone = ProcessPoolExecutor(1, mp_context=self._context, initializer=_init_worker, initargs=(self._queue,))
        retry = alone.submit(_execute, task)

        def finish(finished: Future[TaskResult]) -> None:
            _chain(finished, outer)
            alone.shutdown(wait=False)

        retry.add_done_callback(finish)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._queue is not None:
            self._queue.put(None)
            if self._reader is not None:
                self._reader.join(timeout=5)
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


def _init_worker(queue: Any) -> None:
    global _PROGRESS
    _PROGRESS = queue


def _report(node: str, state: Any) -> None:
    if _PROGRESS is not None:
        _PROGRESS.put((node, state))


def _execute(task: Task) -> TaskResult:
    return execute(task, progress=_report)
