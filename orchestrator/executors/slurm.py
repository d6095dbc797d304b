"""Run each stage as a SLURM job through submitit (or submitit's local executor, for testing)."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..engine.task import Task, TaskResult
from ..engine.worker import execute
from .base import Executor
from .resources import cpus, gpus, memory_bytes
from .snapshot import snapshot

logger = logging.getLogger(__name__)

__all__ = ["SlurmExecutor"]


class SlurmExecutor(Executor):
    """``--executor slurm``: one job per stage, parameters from ``[tool.orchestrator.executor.slurm]``.

    Options (config table or keyword arguments): ``partition``, ``time`` (minutes), ``gpus``,
    ``cpus``, ``mem`` (``"16G"``), ``folder`` (job logs), ``cluster`` (``"slurm"``, or
    ``"local"`` to run jobs as local processes), ``jobs`` (jobs in flight), ``snapshot``
    (``true``: jobs import the project's code from a copy taken at submission, so a job that
    waits in the queue runs the code its key was computed for; see :mod:`.snapshot`). A
    stage's own ``resources=`` hints override the defaults for its job.
    """

    name = "slurm"

    def __init__(self, jobs: int | None = None, partition: str | None = None, time: int = 60,
                 gpus: int = 0, cpus: int = 1, mem: str | None = None, folder: str | None = None,
                 cluster: str | None = None, snapshot: bool = False, **_: Any) -> None:
        import submitit

        self.folder = Path(folder or "cache/runs/submitit").absolute()
        self.cluster = cluster
        self._submitit = submitit
        self._executors: dict[tuple[tuple[str, Any], ...], Any] = {}  # one per job shape
        self.defaults = {"partition": partition, "time": time, "gpus": gpus, "cpus": cpus, "mem": mem}
        self.capacity = max(1, int(jobs or 32))
        self.snapshot = bool(snapshot)
        self._snapshots: dict[str, str] = {}
        self._waiters = ThreadPoolExecutor(self.capacity, thread_name_prefix="orchestrator-slurm")

    def submit(self, task: Task) -> Future[TaskResult]:
        if self.snapshot:
            task = replace(task, code_root=self._code_copy(task.project_root))
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

    def _code_copy(self, project_root: str) -> str:
        """The project's code as it is now (one copy per run and project)."""
        copy = self._snapshots.get(project_root)
        if copy is None:
            copy = self._snapshots[project_root] = str(snapshot(Path(project_root), self.folder / "snapshots"))
            logger.info("jobs import the code copied to %s", copy)
        return copy

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
