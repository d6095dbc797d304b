"""Run stages as Ray tasks (an existing cluster, or a local Ray started for the run)."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

from ..engine.task import Task, TaskResult
from ..engine.worker import execute
from .base import Executor
from .resources import cpus, gpus, memory_bytes

logger = logging.getLogger(__name__)

__all__ = ["RayExecutor"]


class RayExecutor(Executor):
    """``--executor ray [--address ray://head:10001 | auto]``.

    Stage resource hints become Ray's ``num_cpus``/``num_gpus``/``memory``. Artifacts go
    through the shared store, never through Ray's object store; workers must see the
    project's code and the store at the same paths (shared filesystem or S3).
    """

    name = "ray"

    def __init__(self, address: str | None = None, jobs: int | None = None, **_: Any) -> None:
        import ray

        self.ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            ray.init(address=address, num_cpus=None if address else jobs, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        self.capacity = max(1, int(ray.available_resources().get("CPU", jobs or 1)))
        self._remote = ray.remote(execute)

    def submit(self, task: Task) -> Future[TaskResult]:
        options: dict[str, Any] = {"num_cpus": cpus(task.resources), "max_retries": 0}
        if gpus(task.resources):
            options["num_gpus"] = gpus(task.resources)
        memory = memory_bytes(task.resources)
        if memory:
            options["memory"] = memory
        return self._remote.options(**options).remote(task).future()  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
