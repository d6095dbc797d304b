"""The default executor: runs each task in the driver's process, one at a time."""

from __future__ import annotations

from concurrent.futures import Future

from ..task import Task, TaskResult
from ..worker import execute
from .base import Executor

__all__ = ["LocalExecutor"]


class LocalExecutor(Executor):
    """Sequential, in-process: the simplest to debug (breakpoints work inside stages)."""

    name = "local"
    capacity = 1

    def submit(self, task: Task) -> Future[TaskResult]:
        future: Future[TaskResult] = Future()
        future.set_result(execute(task, progress=self.progress))
        return future
