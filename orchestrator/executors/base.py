"""The executor contract and the registry of executors by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, ClassVar

from ..engine.task import Task, TaskResult
from ..errors import UsageError, did_you_mean
from ..registry import Registry

__all__ = ["Executor", "executor_class", "get_executor", "register_executor", "registered_executors"]


class Executor(ABC):
    """Runs tasks somewhere and reports their results through futures.

    Contract:
        * ``submit(task)`` returns a ``concurrent.futures.Future`` whose result is the
          :class:`~orchestrator.engine.task.TaskResult` of ``orchestrator.engine.worker.execute(task)``
          run wherever the executor runs things. It may run the task before returning.
        * A worker that dies must resolve the future with a ``TaskResult`` whose error
          has ``kind="worker"`` (or raise from ``Future.result()``): never hang.
        * ``capacity`` is how many tasks run at once; the driver keeps ``capacity + prefetch`` in flight.
        * ``one_node``: tasks run on this machine (see :mod:`orchestrator.engine.admission`).
        * ``idle()`` (optional) is called while the driver waits with nothing to submit.
        * ``flush()`` (optional) is called once the driver has handed over what it can for now:
          an executor may hold tasks until then and submit them together (SLURM job arrays).
        * ``close()`` releases workers; executors are also context managers.
    """

    name: ClassVar[str]
    #: runs tasks on this node: the driver admits them by the node's GPUs, cores and memory and
    #: reserves GPUs for each (cluster executors leave that to their cluster's resource system)
    one_node: ClassVar[bool] = False
    capacity: int = 1
    #: tasks handed over beyond ``capacity``: each waits in the executor for a worker to free up, so a
    #: worker starts its next task without a round trip to the driver (process pools: one per worker)
    prefetch: int = 0
    #: set by the driver: called with (node_id, MapProgress) while a map stage runs
    progress: Callable[[str, Any], None] | None = None

    @abstractmethod
    def submit(self, task: Task) -> Future[TaskResult]:
        """Start ``task``."""

    def idle(self) -> None:
        """The driver is waiting (on another run's lease) with nothing to submit: drop what is held for a next task."""

    def flush(self) -> None:
        """The driver handed over every task it can for now (an executor may hold them to submit together)."""

    def detach(self) -> None:
        """Leave the submitted tasks running without following them (``--detach``; clusters only).

        Raises:
            UsageError: this executor's tasks cannot outlive the driver.
        """
        raise UsageError(f"--detach needs an executor whose jobs outlive this process; {self.name} runs them "
                         "here. Fix: --executor slurm, or run without --detach.")

    def close(self) -> None:
        """Release workers and connections."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _unknown(name: str, names: list[str]) -> Exception:
    return UsageError(f"unknown executor {name!r}.{did_you_mean(name, names)} Available: {', '.join(names)}.")


_REGISTRY: Registry[Executor] = Registry(Executor, {
    "local": "orchestrator.executors.local:LocalExecutor",
    "process": "orchestrator.executors.process:ProcessExecutor",
    "dask": "orchestrator.executors.dask:DaskExecutor",
    "ray": "orchestrator.executors.ray:RayExecutor",
    "slurm": "orchestrator.executors.slurm:SlurmExecutor",
}, _unknown)


def register_executor(executor: type[Executor] | str, name: str | None = None) -> None:
    """Register an executor class or a lazy ``"package.module:Class"`` string under ``name``."""
    _REGISTRY.register(executor, name)


def registered_executors() -> list[str]:
    """Names of every registered executor."""
    return _REGISTRY.names()


def executor_class(name: str) -> type[Executor]:
    """The executor class registered as ``name`` (imported now).

    Raises:
        UsageError: no executor of that name.
    """
    return _REGISTRY.get(name)


def get_executor(name: str, **options: Any) -> Executor:
    """Instantiate the executor registered as ``name`` with ``options``.

    Raises:
        UsageError: no executor of that name.
    """
    return _REGISTRY.get(name)(**options)


def lazy_paths() -> dict[str, str]:
    """Executors still named by a module path (a test imports each)."""
    return _REGISTRY.lazy_paths()
