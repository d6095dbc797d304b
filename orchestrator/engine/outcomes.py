"""What a run produces: node outcomes, the run result, and the observer protocol for progress."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any

from ..store.base import ArtifactRecord
from ..store.location import open_store
from .task import TaskError

if TYPE_CHECKING:
    from .dag import Dag, Node
    from .planner import Decision

__all__ = ["NodeOutcome", "Observers", "RunObserver", "RunResult", "RunStatus", "Status"]


class Status(str, Enum):
    """What happened to a node in a run."""

    RAN = "ran"  # executed, and its outputs were stored
    CACHED = "cached"  # a stored result was reused
    FAILED = "failed"  # raised, returned bad outputs, or could not store them
    SKIPPED = "skipped"  # not run: an upstream node failed or the run stopped first
    INTERRUPTED = "interrupted"  # was running when the run was interrupted
    SHARDED = "sharded"  # a --shard run stored its share of a map's items; a full run assembles them
    PRUNED = "pruned"  # a search trial the pruner stopped early (its checkpoints stay in the attempt folder)
    DETACHED = "detached"  # submitted as a cluster job that goes on without the driver (run --detach)


class RunStatus(StrEnum):
    """How a run ended (``RUNNING`` only in the records of a run still going, or killed)."""

    SUCCEEDED = "succeeded"  # no node failed
    FAILED = "failed"  # a node failed (the others that could ran, under --keep-going)
    INTERRUPTED = "interrupted"  # Ctrl-C, SIGTERM or SIGHUP; finished stages are kept
    DETACHED = "detached"  # --detach: jobs submitted, the driver left; a later run re-attaches and goes on
    RUNNING = "running"


@dataclass(frozen=True)
class NodeOutcome:
    """The result of one node in a run."""

    node: str
    stage: str
    param_set: str
    status: Status
    key: str | None = None
    seconds: float = 0.0
    reasons: tuple[str, ...] = ()
    outputs: Mapping[str, ArtifactRecord] = field(default_factory=dict)
    error: TaskError | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)
    log_path: str = ""
    peak_rss: int = 0


@dataclass(frozen=True)
class RunResult:
    """Everything a run did, node by node, in the order nodes finished."""

    run_id: str
    status: RunStatus
    outcomes: tuple[NodeOutcome, ...]
    seconds: float
    store_root: str = ""

    @property
    def ok(self) -> bool:
        """True when no node failed and the run was not interrupted (a detached run went as asked)."""
        return self.status in (RunStatus.SUCCEEDED, RunStatus.DETACHED)

    def count(self, status: Status) -> int:
        """How many nodes ended with ``status``."""
        return sum(1 for o in self.outcomes if o.status is status)

    def outcome(self, stage: str, param_set: str | None = None) -> NodeOutcome:
        """The outcome of ``stage`` (for ``param_set``, required when several sets ran)."""
        matches = [o for o in self.outcomes if o.stage == stage and param_set in (None, o.param_set)]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} outcomes for stage {stage!r} and param set {param_set!r}")
        return matches[0]

    def load(self, artifact: str, param_set: str | None = None) -> Any:
        """Load an artifact this run produced or reused (``param_set`` when several sets ran)."""
        from ..store.artifactio import load_artifact

        matches = [o for o in self.outcomes if artifact in o.outputs and param_set in (None, o.param_set)]
        if len(matches) != 1:
            sets = sorted(o.param_set for o in self.outcomes if artifact in o.outputs)
            raise KeyError(f"artifact {artifact!r}: pass param_set= one of {sets}" if sets else
                           f"this run stored no artifact {artifact!r}")
        return load_artifact(open_store(self.store_root), matches[0].outputs[artifact], as_path=False)

    @property
    def failures(self) -> list[NodeOutcome]:
        """The failed nodes."""
        return [o for o in self.outcomes if o.status is Status.FAILED]


class RunObserver:
    """Receives progress events from the driver (the CLI renders them; run records store them)."""

    def run_started(self, run_id: str, dag: Dag) -> None:
        """The run is about to decide its first node."""

    def node_started(self, node: Node, decision: Decision) -> None:
        """A node was submitted to the executor."""

    def node_finished(self, outcome: NodeOutcome) -> None:
        """A node ended (ran, cached, failed, skipped or interrupted)."""

    def map_progress(self, node_id: str, progress: Any) -> None:
        """A map stage advanced (``progress`` is a :class:`~orchestrator.map.progress.MapProgress`)."""

    def nodes_added(self, dag: Dag) -> None:
        """The run grew by these nodes (a search's new trials), each of a param set of its own."""

    def resources(self, holding: Mapping[str, str], waiting: Sequence[str]) -> None:
        """GPUs changed hands (one-node scheduling): node -> the GPUs it holds, nodes waiting for resources."""

    def waiting(self) -> None:
        """The driver is about to wait for running nodes (or another run): write down what is pending."""

    def run_finished(self, result: RunResult) -> None:
        """The run ended."""


class Observers(RunObserver):
    """Forwards every event to several observers, in order."""

    def __init__(self, *observers: RunObserver) -> None:
        self.observers = [o for o in observers if o is not None]

    def run_started(self, run_id: str, dag: Dag) -> None:
        for observer in self.observers:
            observer.run_started(run_id, dag)

    def node_started(self, node: Node, decision: Decision) -> None:
        for observer in self.observers:
            observer.node_started(node, decision)

    def node_finished(self, outcome: NodeOutcome) -> None:
        for observer in self.observers:
            observer.node_finished(outcome)

    def map_progress(self, node_id: str, progress: Any) -> None:
        for observer in self.observers:
            observer.map_progress(node_id, progress)

    def nodes_added(self, dag: Dag) -> None:
        for observer in self.observers:
            observer.nodes_added(dag)

    def resources(self, holding: Mapping[str, str], waiting: Sequence[str]) -> None:
        for observer in self.observers:
            observer.resources(holding, waiting)

    def waiting(self) -> None:
        for observer in self.observers:
            observer.waiting()

    def run_finished(self, result: RunResult) -> None:
        for observer in self.observers:
            observer.run_finished(result)
