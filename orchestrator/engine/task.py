"""What the driver ships to a worker and what comes back: plain, picklable values.

A task names its stage by module and name (no pickled closures), carries the params
and the store records of its inputs, and says where the store is. Workers only load
inputs, run the stage and write objects; the driver alone writes key records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..store.base import ArtifactRecord, Store
from .claims import map_key_of
from .dag import Node
from .options import RunOptions
from .planner import Decision

__all__ = ["FailureKind", "InputSpec", "Task", "TaskError", "TaskFailed", "TaskResult", "task_for"]


@dataclass(frozen=True)
class InputSpec:
    """One input value of a task: which stored artifact, under which parameter name."""

    name: str
    label: str
    record: ArtifactRecord
    producer: str
    as_path: bool = False


@dataclass(frozen=True)
class Task:
    """A stage execution to perform.

    ``log_path`` (when set) receives everything the stage prints or logs; ``options``
    carries run-wide settings for extensions (``workers``, ``shard``, ``devices``...).
    """

    node: str
    stage: str
    module: str
    param_set: str
    key: str
    params: Mapping[str, Any]
    set_values: Mapping[str, Any]
    seed: int
    inputs: tuple[InputSpec, ...]
    cachers: Mapping[str, str]
    store: str
    project_root: str
    log_path: str = ""
    options: RunOptions = field(default_factory=RunOptions)
    map_key: str = ""
    resources: Mapping[str, Any] = field(default_factory=dict)
    code: str = ""  # the code fingerprint the key was computed for: a worker in another process checks it
    code_root: str = ""  # where to import the project's code from, when not project_root (a snapshot)
    gpus: str | None = None  # the GPUs reserved for it (CUDA_VISIBLE_DEVICES); None: leave the environment alone


class FailureKind(StrEnum):
    """Why a task failed, in one word (the value is what records and ``--json`` show)."""

    STAGE = "stage"  # the stage raised
    OUTPUTS = "outputs"  # it returned something that does not match its declared outputs
    CACHER = "cacher"  # an output could not be stored, or an input loaded
    CORRUPT = "corrupt"  # an input object failed verification (``producer`` names its node)
    ITEMS = "items"  # items of a map stage failed beyond what it accepts
    CODE = "code"  # the worker imported code that does not fingerprint to the key's
    SHARDED = "sharded"  # a ``--shard`` run stored its share of a map's items; the output needs every shard
    WORKER = "worker"  # the worker process died
    STORE = "store"  # the outputs were stored but not the key record
    DATA = "data"  # it read files that are not part of its key, under ``--strict-data``
    PRUNED = "pruned"  # a search's pruner stopped its trial early (not a failure)


@dataclass(frozen=True)
class TaskError:
    """Why a task failed: a :class:`FailureKind`, a message that ends with the fix, and where."""

    kind: FailureKind
    message: str
    type: str = ""
    traceback: str = ""
    producer: str = ""
    artifact: str = ""


class TaskFailed(Exception):
    """Raised inside a worker (the stage's own process, a map driver) with the TaskError its task reports."""

    def __init__(self, error: TaskError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class TaskResult:
    """The outcome of a task; ``peak_rss`` is the worker process's peak resident memory in bytes."""

    node: str
    outputs: Mapping[str, ArtifactRecord] = field(default_factory=dict)
    seconds: float = 0.0
    extras: Mapping[str, Any] = field(default_factory=dict)
    error: TaskError | None = None
    peak_rss: int = 0


def task_for(node: Node, decision: Decision, outputs: Mapping[str, Mapping[str, ArtifactRecord]], store: Store, *,
             run_id: str, project_root: str, options: RunOptions, code: str) -> Task:
    """The task that computes ``node`` under ``decision``'s key; ``outputs`` are its producers' records."""
    specs = tuple(
        InputSpec(
            name=ref.artifact,
            label=ref.label,
            record=outputs[ref.producer][ref.artifact],
            producer=ref.producer,
            as_path=ref.artifact in node.stage.path_inputs,
        )
        for ref in node.inputs
    )
    return Task(
        node=node.id,
        stage=node.stage.name,
        module=node.stage.module,
        param_set=node.param_set,
        key=decision.key or "",
        params=node.params,
        set_values=node.set_values,
        seed=node.seed,
        inputs=specs,
        cachers=dict(node.stage.cachers),
        store=store.url,
        project_root=project_root,
        log_path=str(store.workspace.log_path(run_id, node.id)),
        options=options,
        map_key=map_key_of(node, decision),
        resources=dict(node.stage.resources),
        code=code,
    )
