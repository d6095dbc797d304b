"""The default executor: runs each task in the driver's process, one at a time."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from ..engine.handoff import Handoff
from ..engine.task import Task, TaskResult
from ..engine.worker import execute
from .base import Executor

__all__ = ["LocalExecutor"]


class LocalExecutor(Executor):
    """Sequential, in-process: the simplest to debug (breakpoints work inside stages)."""

    name = "local"
    one_node = True
    capacity = 1

    def __init__(self, **_: Any) -> None:
        self._handoff = Handoff()  # a consumer run right after its producer gets its output without a reload

    def submit(self, task: Task) -> Future[TaskResult]:
        future: Future[TaskResult] = Future()
        future.set_result(execute(task, progress=self.progress, handoff=self._handoff, in_process=True))
        return future

    def idle(self) -> None:
        self._handoff.clear()

    def close(self) -> None:
        self._handoff.clear()
        super().close()
