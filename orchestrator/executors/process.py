"""Run stages in a local process pool: independent stages (across sets and branches) in parallel."""

from __future__ import annotations

import logging
import multiprocessing
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
    """

    name = "process"

    def __init__(self, jobs: int | None = None, **_: Any) -> None:
        self.capacity = max(1, int(jobs or usable_cpus()))
        self._pool: ProcessPoolExecutor | None = None

    def _ensure(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(self.capacity, mp_context=context)
        return self._pool

    def submit(self, task: Task) -> Future[TaskResult]:
        try:
            return self._ensure().submit(execute, task)
        except BrokenProcessPool:
            logger.warning("the process pool lost a worker; starting a new one")
            self._pool = None
            return self._ensure().submit(execute, task)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
