"""Executors run tasks; the driver decides which. See :class:`~orchestrator.executors.base.Executor`."""

from .base import (
    Executor,
    executor_class,
    get_executor,
    register_executor,
    registered_executors,
)

__all__ = ["Executor", "executor_class", "get_executor", "register_executor", "registered_executors"]
