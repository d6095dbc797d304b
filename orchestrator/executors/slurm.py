"""Run each stage as a SLURM job through submitit (or submitit's local executor, for testing)."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..task import Task, TaskResult
from ..worker import execute
from .base import Executor
from .resources import cpus, gpus, memory_bytes

logger = logging.getLogger(__name__)

__all__ = ["SlurmExecutor"]


class SlurmExecutor(Executor):
    """``--executor slurm``: one job per stage, parameters from ``[tool.orchestrator.executor.slurm]``.

    Options (config table or keyword arguments): ``partition``, ``time`` (minutes), ``gpus``,
    ``cpus``, ``mem`` (``"16G"``), ``folder`` (job logs), ``cluster`` (``"slurm"``, or
    ``"local"`` to run jobs as local processes), ``jobs`` (jobs in flight). A stage's own
    ``resources=`` hints override the defaults for its job.
    """

    name = "slurm"

    def __init__(self, jobs: int | None = None, partition: str | None = None, time: int = 60,
                 gpus: int = 0, cpus: int = 1, mem: str | None = None, folder: str | None = None,
                 cluster: str | None = None, **_: Any) -> None:
        import submitit

        self.folder = Path(folder or "cache/runs/submitit").absolute()
        self.cluster = cluster
        self._submitit = submitit
        self._executors: dict[tuple[tuple[str, Any], ...], Any] = {}  # one per job shape
        self.defaults = {"partition": partition, "time": time, "gpus": gpus, "cpus": cpus, "mem": mem}
        self.capacity = max(1, int(jobs or 32))
        self._waiters = ThreadPoolExecutor(self.capacity, thread_name_prefix="orchestrator-slurm")

    def submit(self, task: Task) -> Future[TaskResult]:
        hints = {**{k: v for k, v in self.defaults.items() if v is not None}, **task.resources}
        parameters: dict[str, Any] = {"timeout_min": int(hints.get("time", 60)), "cpus_per_task": int(cpus(hints)),
                                      "name": f"{task.stage}"}
        if gpus(hints):
            parameters["gpus_per_node"] = int(gpus(hints))
        memory = memory_bytes(hints)
        if memory:
            parameters["mem_gb"] = max(1, memory // 1024**3)
        if hints.get("partition"):
            parameters["slurm_partition"] = hints["partition"]
        job = self._executor(parameters).submit(execute, task)
        logger.info("%s [%s]: submitted job %s", task.stage, task.param_set, job.job_id)
        return self._waiters.submit(job.result)

    def _executor(self, parameters: dict[str, Any]) -> Any:
        """A submitit executor for exactly these job parameters.

        submitit's ``update_parameters`` merges into what was set before, so one shared
        executor would hand a GPU stage's partition and GPUs to every later job.
        """
        shape = tuple(sorted((k, v) for k, v in parameters.items() if k != "name"))
        executor = self._executors.get(shape)
        if executor is None:
            executor = self._submitit.AutoExecutor(folder=str(self.folder), cluster=self.cluster)
            executor.update_parameters(**dict(shape))
            self._executors[shape] = executor
        executor.update_parameters(name=parameters["name"])
        return executor

    def close(self) -> None:
        self._waiters.shutdown(wait=True, cancel_futures=True)
