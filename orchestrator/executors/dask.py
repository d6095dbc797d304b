"""Run stages on a Dask distributed cluster (an existing one, or a LocalCluster on 127.0.0.1)."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from ..engine.options import MapEngine
from ..engine.task import Task, TaskResult
from ..engine.worker import execute
from .base import Executor
from .resources import cpus, gpus, memory_bytes, usable_cpus

logger = logging.getLogger(__name__)

__all__ = ["DaskExecutor"]


class DaskExecutor(Executor):
    """``--executor dask [--address tcp://scheduler:8786]``.

    Without an address, starts a ``LocalCluster`` with one single-threaded worker process
    per core, every service bound to 127.0.0.1. Workers must see the project's code and the
    artifact store at the same paths (a shared filesystem, or an S3 store).
    """

    name = "dask"

    def __init__(self, address: str | None = None, jobs: int | None = None, **_: Any) -> None:
        import dask
        from distributed import Client, LocalCluster

        self.cluster = None
        # map stages start process pools inside a worker: workers must not be daemonic
        dask.config.set({"distributed.worker.daemon": False})
        if address:
            self.client = Client(address)
        else:
            # no dashboard, so nobody reads the workers' statistical profiler: it samples the
            # running stage every 10 ms and slowed CPU-bound stages by ~10% (docs/performance.md)
            dask.config.set({"distributed.worker.profile.enabled": False})
            self.cluster = LocalCluster(n_workers=jobs or usable_cpus(), threads_per_worker=1,
                                        processes=True, host="127.0.0.1", dashboard_address=None)
            self.client = Client(self.cluster)
        threads = self.client.nthreads()
        self.capacity = max(1, sum(threads.values()))
        info = self.client.scheduler_info().get("workers", {})
        self.advertised = {name for worker in info.values() for name in worker.get("resources", {})}
        self._executor = self.client.get_executor(pure=False)
        logger.info("dask: %d workers, %d threads (%s)", len(threads), self.capacity, self.client.dashboard_link)

    def submit(self, task: Task) -> Future[TaskResult]:
        task = replace(task, options=task.options.on_engine(MapEngine.DASK))  # map chunks on this cluster too
        # Dask resources are labels workers advertise (`dask worker --resources "GPU=2,CPU=8,MEMORY=64e9"`):
        # each hint is honoured where the cluster advertises it, with a warning for a GPU nobody has
        memory = memory_bytes(task.resources)
        hinted = {"GPU": gpus(task.resources), "CPU": cpus(task.resources, 0), "MEMORY": float(memory or 0)}
        wanted = {k: v for k, v in hinted.items() if v}
        resources = {k: v for k, v in wanted.items() if k in self.advertised}
        if "GPU" in wanted and "GPU" not in resources:
            logger.warning("%s asks for %s but no dask worker advertises it; running it anyway", task.stage, wanted)
        if resources:
            return self.client.get_executor(pure=False, resources=resources).submit(execute, task)
        return self._executor.submit(execute, task)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
