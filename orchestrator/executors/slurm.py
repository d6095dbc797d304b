"""Run each stage as a SLURM job through submitit (or submitit's local executor, for testing)."""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..engine.task import Task, TaskResult
from ..engine.worker import execute
from .base import Executor
from .resources import cpus, gpus, memory_bytes
from .slurmjobs import ACTIVE, JobEntry, JobRegistry, state_of
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

    Tasks the driver hands over together (a wave of independent nodes) are submitted at
    :meth:`flush`: those of one stage with the same job parameters go out as **one job array**.
    Every job is remembered by its task's cache key (:mod:`.slurmjobs`), so a later run
    re-attaches to a job still queued or running, or collects a finished one, instead of
    submitting it again. :meth:`detach` stops watching without cancelling anything.
    """

    name = "slurm"

    def __init__(self, jobs: int | None = None, partition: str | None = None, time: int = 60,
                 gpus: int = 0, cpus: int = 1, mem: str | None = None, folder: str | None = None,
                 cluster: str | None = None, snapshot: bool = False, poll: float = 0.5, **_: Any) -> None:
        import submitit

        self.folder = Path(folder or "cache/runs/submitit").absolute()
        self.cluster = cluster
        self._submitit = submitit
        self._executors: dict[tuple[tuple[str, Any], ...], Any] = {}  # one per job shape
        self.defaults = {"partition": partition, "time": time, "gpus": gpus, "cpus": cpus, "mem": mem}
        self.capacity = max(1, int(jobs or 32))
        self.snapshot = bool(snapshot)
        self._snapshots: dict[str, str] = {}
        self.registry = JobRegistry(self.folder)
        self._known: dict[str, JobEntry] | None = None  # key -> the last job submitted for it (read once)
        self._pending: list[tuple[Task, Future[TaskResult]]] = []
        self._watched: dict[Any, tuple[Task, Future[TaskResult]]] = {}  # job -> its task and future
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poll = float(poll)
        self._watcher = threading.Thread(target=self._watch, name="orchestrator-slurm-jobs", daemon=True)
        self._watcher.start()

    def submit(self, task: Task) -> Future[TaskResult]:
        future: Future[TaskResult] = Future()
        job = self._attachable(task)
        if job is not None:
            with self._lock:
                self._watched[job] = (task, future)
            self.registry.add([self._entry(task, job.job_id)])
            return future
        if self.snapshot:
            task = replace(task, code_root=self._code_copy(task.project_root))
        self._pending.append((task, future))
        return future

    def flush(self) -> None:
        """Submit what was handed over since the last flush: each stage's tasks of one shape as one job array."""
        pending, self._pending = self._pending, []
        groups: dict[tuple[str, tuple[tuple[str, Any], ...]], list[tuple[Task, Future[TaskResult]]]] = {}
        for task, future in pending:
            parameters = self._parameters(task)
            shape = tuple(sorted((k, v) for k, v in parameters.items() if k != "name"))
            groups.setdefault((task.stage, shape), []).append((task, future))
        for (stage, shape), members in groups.items():
            executor = self._executor({**dict(shape), "name": stage})
            if len(members) == 1:
                jobs = [executor.submit(execute, members[0][0])]
            else:
                with executor.batch():
                    jobs = [executor.submit(execute, task) for task, _ in members]
            entries = []
            with self._lock:
                for job, (task, future) in zip(jobs, members):
                    self._watched[job] = (task, future)
                    entries.append(self._entry(task, job.job_id))
            self.registry.add(entries)
            if len(members) > 1:
                logger.info("%s: %d tasks submitted as one job array (%s)", stage, len(members),
                            str(jobs[0].job_id).split("_")[0])
            else:
                logger.info("%s [%s]: submitted job %s", stage, members[0][0].param_set, jobs[0].job_id)

    def _parameters(self, task: Task) -> dict[str, Any]:
        hints = {**{k: v for k, v in self.defaults.items() if v is not None}, **task.resources}
        parameters: dict[str, Any] = {"timeout_min": int(hints.get("time", 60)), "cpus_per_task": int(cpus(hints)),
                                      "name": f"{task.stage}"}
        if gpus(hints):  # a share of a GPU is a whole one to SLURM (jobs do not share a GPU)
            parameters["gpus_per_node"] = max(1, math.ceil(gpus(hints)))
        memory = memory_bytes(hints)
        if memory:
            parameters["mem_gb"] = max(1, memory // 1024**3)
        if hints.get("partition"):
            parameters["slurm_partition"] = hints["partition"]
        return parameters

    def _entry(self, task: Task, job_id: str) -> JobEntry:
        return JobEntry(task.key, str(job_id), task.stage, task.param_set, task.node, _run_of(task), time.time())

    def _attachable(self, task: Task) -> Any:
        """The job of an earlier run that computes this very key and may still deliver it, or None."""
        if not task.key:
            return None
        if self._known is None:
            self._known = self.registry.latest()
        entry = self._known.get(task.key)
        if entry is None:
            return None
        job = self._job_class()(folder=str(self.folder), job_id=entry.job_id)
        state = state_of(job)
        if state in ACTIVE:
            logger.info("%s [%s]: re-attached to job %s (%s)", task.stage, task.param_set, entry.job_id, state.lower())
            return job
        if state == "COMPLETED":
            try:
                result = job.result()
            except Exception:  # noqa: BLE001 - its result is unreadable: compute it again
                return None
            if isinstance(result, TaskResult) and result.error is None:
                logger.info("%s [%s]: collected the result of job %s", task.stage, task.param_set, entry.job_id)
                return job
        return None

    def _job_class(self) -> Any:
        any_executor = self._executor({"timeout_min": int(self.defaults.get("time") or 60), "name": "attach"})
        return any_executor._executor.job_class

    def _watch(self) -> None:
        """One thread follows every job; each future is resolved when its job ends (never cancels a job)."""
        while not self._stop.wait(self._poll):
            with self._lock:
                watched = list(self._watched.items())
            for job, (task, future) in watched:
                state = state_of(job)
                if state in ACTIVE or state == "RUNNING":
                    continue
                with self._lock:
                    self._watched.pop(job, None)
                try:
                    future.set_result(job.result())
                except Exception as exc:  # noqa: BLE001 - failed, cancelled, timed out, lost: the driver retries
                    future.set_exception(RuntimeError(f"job {job.job_id} ended {state.lower()}: {exc}"))

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

    def detach(self) -> None:
        """Stop following the jobs and leave them to run (``--detach``); a later run re-attaches."""
        self._stop.set()
        with self._lock:
            self._watched.clear()

    def close(self) -> None:
        self.flush()
        self._stop.set()
        self._watcher.join(timeout=5)


def _run_of(task: Task) -> str:
    """The run a task belongs to (its log lives under ``runs/<run>/logs``)."""
    parts = Path(task.log_path).parts
    return parts[parts.index("runs") + 1] if "runs" in parts[:-1] else ""
