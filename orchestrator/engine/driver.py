"""The driver: walks the DAG as results arrive, decides each node, records what happened.

:func:`orchestrator.engine.run.execute_dag` runs one; this module is its loop.

A ready-set loop: a node is decided the moment all its inputs are known, so early cutoff
falls out naturally (a rerun stage whose outputs are byte-identical leaves its consumers'
keys unchanged, hence cached). Tasks go to an executor; only the driver writes key
records, so a failing worker can never corrupt the store's bookkeeping.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import replace
from typing import Any

from ..errors import StoreError
from ..executors import Executor
from ..keys.cachekey import input_label
from ..keys.fingerprint import CodeFingerprint
from ..store.base import ArtifactRecord, KeyRecord, Store
from ..store.leases import Leases
from .admission import Grant, Ledger
from .claims import Claims
from .dag import Dag, Node
from .feed import NodeFeed
from .options import RunOptions
from .outcomes import NodeOutcome, Observers, RunObserver, RunResult, RunStatus, Status
from .planner import Action, Decision, decide, recheck
from .reservations import Reservations
from .task import FailureKind, TaskError, TaskResult, task_for

logger = logging.getLogger(__name__)

__all__ = ["Driver", "NodeOutcome", "Observers", "RunObserver", "RunResult", "RunStatus", "Status"]

# the values a run produces live in outcomes.py; they are re-exported here for convenience

MAX_CORRUPTION_RETRIES = 2
LEASE_POLL = 0.25  # seconds between checks on stages another run is computing
REFS_EVERY = 1.0  # seconds between writes of the plan's key parts, so a killed run still explains its stages
REFS_SHARE = 0.05  # ... or longer: at most this share of a run rewrites them (refs.json grows with the store)


def _succeeded(future: Future[TaskResult]) -> bool:
    return future.exception() is None and future.result().error is None


class Driver:
    def __init__(
        self,
        dag: Dag,
        fingerprints: Mapping[str, CodeFingerprint],
        store: Store,
        executor: Executor,
        *,
        forced: Iterable[str],
        keep_going: bool,
        observer: RunObserver,
        project_root: str,
        run_id: str,
        options: RunOptions,
        resources: Ledger | None = None,
        feed: NodeFeed | None = None,
        detach: bool = False,
    ) -> None:
        self.run_id = run_id
        self.dag = dag
        self.fingerprints = fingerprints
        self.store = store
        self.executor = executor
        self.forced = set(forced)
        self.options = options
        executor.progress = observer.map_progress  # map stages' item counts, for the live display
        self.keep_going = keep_going
        self.observer = observer
        self.project_root = project_root
        self.waiting = {nid: len(dag.upstream(nid)) for nid in dag.nodes}
        self.ready = deque(nid for nid, count in self.waiting.items() if count == 0)
        self.running: dict[Future[TaskResult], tuple[str, Decision]] = {}
        self.outputs: dict[str, Mapping[str, ArtifactRecord]] = {}
        self.outcomes: dict[str, NodeOutcome] = {}
        self.corruptions: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self.stopped = False
        self.submitting: tuple[str, Decision] | None = None
        self.claims = Claims(Leases(store))
        self.warned_reads: set[str] = set()
        self.blocked: dict[str, float] = {}  # nodes whose key another run is computing -> since when
        self.refs: dict[tuple[str, str], Any] = {}  # key parts of what ran, for the next plan's reasons
        self.refs_written = time.monotonic()
        self.refs_every = REFS_EVERY
        self.reservations = Reservations(resources) if resources is not None else None
        self.slots = max(1, executor.capacity) + max(0, executor.prefetch)  # tasks in flight
        self.feed = feed
        self.detach = detach
        self.detached = False

    def run(self) -> None:
        with self.claims:
            while True:
                if self.feed is not None and not self.stopped:
                    self._grow()
                parked = self.reservations is not None and bool(self.reservations.parked)
                if not (self.ready or self.running or ((self.blocked or parked) and not self.stopped)):
                    break
                if parked and not self.running:  # (cannot stay parked: nothing would give resources back)
                    self._unpark()
                while self.ready and not self.stopped and len(self.running) < self.slots:
                    self._start(self.ready.popleft())
                if self.blocked and not self.stopped:
                    for nid in list(self.blocked):
                        if len(self.running) < self.slots:
                            self._start(nid)
                self.executor.flush()
                if self.detach and self.running:  # (submitted: the jobs go on without this process)
                    self.detached = True
                    return
                if not self.running:
                    if self.ready and not self.stopped:
                        continue
                    if not self.blocked or self.stopped:
                        if self.feed is None or self.stopped:
                            break
                        continue  # (the feed may add nodes now that these ended)
                    self.executor.idle()  # waiting on another run: hold nothing for a next task
                    self.observer.waiting()
                    time.sleep(LEASE_POLL)
                    continue
                if not any(future.done() for future in self.running):  # the in-process executor never waits
                    self.observer.waiting()
                done, _ = wait(list(self.running), timeout=LEASE_POLL if self.blocked else None,
                               return_when=FIRST_COMPLETED)
                finished = [(future, *self.running.pop(future)) for future in done]
                if not self.stopped and self.ready:  # refill the freed slots first: the workers wait on this
                    for future, nid, _ in finished:  # process, not on the bookkeeping of what they finished
                        if self.reservations is not None and _succeeded(future):
                            self.reservations.give_early(nid)
                    while self.ready and not self.stopped and len(self.running) < self.slots:
                        self._start(self.ready.popleft())
                    self.executor.flush()
                for future, nid, decision in finished:
                    self._finish(nid, decision, future)

    def _grow(self) -> None:
        """Add the nodes the feed has for the run now (new param sets, each wired within itself)."""
        assert self.feed is not None
        for sub in self.feed.more():
            fresh = [nid for nid in sub.nodes if nid not in self.dag.nodes]
            self.dag = Dag({**self.dag.nodes, **sub.nodes}, {**self.dag.consumers, **sub.consumers},
                           self.dag.targets, self.dag.stages)
            for nid in fresh:
                self.waiting[nid] = len(self.dag.upstream(nid))
                if self.waiting[nid] == 0:
                    self.ready.append(nid)
            self.observer.nodes_added(sub)

    def _start(self, nid: str) -> None:
        node = self.dag.nodes[nid]
        hashes = {input_label(r.artifact, r.label): self.outputs[r.producer][r.artifact].hash for r in node.inputs}
        decision = (self.reservations and self.reservations.decision(nid)) or decide(
            node, self.fingerprints[node.stage.name], hashes, self.store, forced=node.stage.name in self.forced
        )
        grant: Grant | None = None
        if decision.action is Action.RUN and self.reservations is not None:
            grant = self.reservations.take(node, decision, alone=not self.running)
            if grant is None:
                self._show_resources()
                return
        if decision.action is Action.RUN and decision.key is not None:
            if not self.claims.take(node, decision):
                self._give(nid, grant)
                if nid not in self.blocked:
                    logger.info("%s [%s]: another run is computing it; waiting to reuse its result",
                                node.stage.name, node.param_set)
                self.blocked.setdefault(nid, time.monotonic())
                return
            # another run may have stored it since we decided (or while we waited)
            again = recheck(decision, self.store) if node.stage.name not in self.forced else decision
            if again.action is Action.CACHED:
                self.claims.release(node, decision)
                self._give(nid, grant)
                decision = again
        self.blocked.pop(nid, None)
        if decision.action is Action.CACHED and decision.record is not None:
            record = decision.record
            if decision.parts is not None:  # a set served from the cache explains its next plan too
                parts = decision.parts.to_dict()
                if self.store.get_ref(node.stage.name, node.param_set) != parts:
                    self.refs[(node.stage.name, node.param_set)] = parts
            self._done(NodeOutcome(nid, node.stage.name, node.param_set, Status.CACHED, decision.key,
                                   0.0, (), record.outputs, extras=record.extras))
            return
        if grant is not None and self.reservations is not None:
            self.reservations.hold(nid, grant)
        self._submit(node, decision)

    def _give(self, nid: str, grant: Grant | None) -> None:
        if grant is not None and self.reservations is not None:
            self.reservations.give(grant)
            self._unpark()

    def _unpark(self) -> None:
        """Resources came back: the parked nodes that fit now go first in line, in the order they parked."""
        if self.reservations is not None:
            fitting = self.reservations.fitting(lambda n: self.dag.nodes[n].stage, anything_running=bool(self.running))
            self.ready.extendleft(reversed(fitting))

    def _show_resources(self) -> None:
        if self.reservations is not None:
            self.observer.resources(self.reservations.holding(), tuple(self.reservations.parked))

    def _warn_reads(self, node: Node, result: TaskResult) -> None:
        """Once per stage and run: the files it read that its key does not cover."""
        reads = list(result.extras.get("undeclared_reads", ()))
        if not reads or node.stage.name in self.warned_reads or (result.error and result.error.kind is FailureKind.DATA):
            return
        self.warned_reads.add(node.stage.name)
        shown = ", ".join(reads[:5]) + (f" and {len(reads) - 5} more" if len(reads) > 5 else "")
        logger.warning(
            "%s read %s, which %s not part of its key: an edit there will not rerun it. Declare it: a param "
            "annotated Annotated[Path, Data()] that names it, or an input made with files('...', name=...) "
            "(run --strict-data makes this an error).", node.stage.name, shown, "is" if len(reads) == 1 else "are")

    def _submit(self, node: Node, decision: Decision) -> None:
        nid = node.id
        if self.refs and time.monotonic() - self.refs_written > self.refs_every:
            self.write_refs()  # before a stage that may run long (and be killed), not only at the end
        task = task_for(node, decision, {r.producer: self.outputs[r.producer] for r in node.inputs}, self.store,
                        run_id=self.run_id, project_root=self.project_root, options=self.options,
                        code=self.fingerprints[node.stage.name].digest)
        visible = self.reservations.visible(nid) if self.reservations is not None else None
        if visible is not None:
            task = replace(task, gpus=visible)
            if visible:
                logger.info("%s [%s] runs on GPU %s", node.stage.name, node.param_set, visible)
        self.observer.node_started(node, decision)
        self.submitting = (nid, decision)
        future = self.executor.submit(task)
        self.submitting = None
        self.running[future] = (nid, decision)
        self._show_resources()

    def _finish(self, nid: str, decision: Decision, future: Future[TaskResult]) -> None:
        node = self.dag.nodes[nid]
        try:
            result = future.result()
        except Exception as exc:  # an executor that lost its worker
            result = TaskResult(nid, error=TaskError(FailureKind.WORKER, f"the worker running it died: {exc}", type(exc).__name__))
        self._warn_reads(node, result)
        if result.error is not None and result.error.kind not in (FailureKind.SHARDED, FailureKind.CORRUPT,
                                                                  FailureKind.PRUNED):
            attempt = self.attempts.get(nid, 0)
            if attempt < node.stage.retries:
                self.attempts[nid] = attempt + 1
                logger.warning("%s [%s] failed (%s); retry %d of %d", node.stage.name, node.param_set,
                               result.error.message, attempt + 1, node.stage.retries)
                self._submit(node, decision)
                return
        grant = self.reservations.release(nid) if self.reservations is not None else None
        if grant is not None:
            if grant.gpus:  # the run record keeps the devices of each execution
                result = replace(result, extras={**result.extras, "gpus": grant.visible})
            self._unpark()
            self._show_resources()
        if result.error is None:
            result = self._record(node, decision, result)
        if decision.key is not None:  # only now: a run waiting on this key finds the record
            self.claims.release(node, decision)
        if result.error is not None and result.error.kind is FailureKind.CORRUPT and self._recover(nid, result.error):
            return
        if result.error is not None and result.error.kind in (FailureKind.SHARDED, FailureKind.PRUNED):
            status = Status.SHARDED if result.error.kind is FailureKind.SHARDED else Status.PRUNED
            outcome = NodeOutcome(nid, node.stage.name, node.param_set, status, decision.key,
                                  result.seconds, (result.error.message,), extras=result.extras,
                                  log_path=self._log(nid), peak_rss=result.peak_rss)
            self.outcomes[nid] = outcome
            self.observer.node_finished(outcome)
            return
        if result.error is not None:
            outcome = NodeOutcome(nid, node.stage.name, node.param_set, Status.FAILED, decision.key,
                                  result.seconds, decision.reasons, error=result.error, extras=result.extras,
                                  log_path=self._log(nid), peak_rss=result.peak_rss)
            self.outcomes[nid] = outcome
            self.observer.node_finished(outcome)
            if not self.keep_going:
                self.stopped = True
            return
        self._done(NodeOutcome(nid, node.stage.name, node.param_set, Status.RAN, decision.key,
                               result.seconds, decision.reasons, result.outputs, extras=result.extras,
                               log_path=self._log(nid), peak_rss=result.peak_rss))

    def _record(self, node: Node, decision: Decision, result: TaskResult) -> TaskResult:
        """Publish the key record of a successful execution (the driver alone writes records)."""
        assert decision.key is not None and decision.parts is not None
        parts = decision.parts.to_dict()
        record = KeyRecord(decision.key, node.stage.name, node.param_set, parts, dict(result.outputs),
                           time.time(), result.seconds, dict(result.extras))
        try:
            self.store.put_record(record)
        except StoreError as exc:
            return replace(result, error=TaskError(FailureKind.STORE, f"its outputs were stored but not its key record: {exc}",
                                                   type(exc).__name__))
        self.refs[(node.stage.name, node.param_set)] = parts
        return result

    def write_refs(self) -> None:
        """Merge the key parts gathered so far into the store's refs (the plan's "what changed")."""
        started = time.monotonic()
        try:
            self.store.put_refs(self.refs)
        except StoreError as exc:
            logger.warning("could not remember this run's key parts for explanations: %s", exc)
            return
        self.refs = {}
        self.refs_written = time.monotonic()
        self.refs_every = max(REFS_EVERY, (self.refs_written - started) / REFS_SHARE)

    def _log(self, nid: str) -> str:
        path = self.store.workspace.log_path(self.run_id, nid)
        return str(path) if path.exists() else ""

    def _recover(self, nid: str, error: TaskError) -> bool:
        """An input object failed verification: forget it, recompute its producer, retry ``nid``."""
        producer = error.producer
        count = self.corruptions.get(producer, 0)
        if count >= MAX_CORRUPTION_RETRIES or producer not in self.outcomes:
            return False
        self.corruptions[producer] = count + 1
        logger.warning("%s; recomputing %s", error.message, producer)
        bad = self.outputs[producer][error.artifact]
        self.store.discard_object(bad.object)
        stale = self.outcomes.pop(producer)
        if stale.key:
            self.store.drop_record(stale.key)
        del self.outputs[producer]
        self.waiting[nid] = 1
        self.ready.appendleft(producer)
        return True

    def _done(self, outcome: NodeOutcome) -> None:
        self.outcomes[outcome.node] = outcome
        self.outputs[outcome.node] = outcome.outputs
        self.observer.node_finished(outcome)
        for consumer in self.dag.consumers[outcome.node]:
            if consumer in self.outcomes:
                continue
            self.waiting[consumer] -= 1
            if self.waiting[consumer] == 0:
                self.ready.append(consumer)

    def interrupt(self) -> None:
        pending = list(self.running.values())
        if self.submitting is not None:
            pending.append(self.submitting)
        for nid, decision in pending:
            node = self.dag.nodes[nid]
            outcome = NodeOutcome(nid, node.stage.name, node.param_set, Status.INTERRUPTED, decision.key,
                                  log_path=self._log(nid))
            self.outcomes[nid] = outcome
            self.observer.node_finished(outcome)
        self.running.clear()

    def leave(self) -> None:
        """``--detach``: the submitted nodes go on as jobs; the rest waits for a later run."""
        self.executor.detach()
        for nid, decision in self.running.values():
            node = self.dag.nodes[nid]  # (its lease went with the run: the job registry re-attaches to it)
            outcome = NodeOutcome(nid, node.stage.name, node.param_set, Status.DETACHED, decision.key,
                                  reasons=("submitted; experiment status RUN follows it",))
            self.outcomes[nid] = outcome
            self.observer.node_finished(outcome)
        self.running.clear()

    def skip_rest(self) -> None:
        for nid, node in self.dag.nodes.items():
            if nid not in self.outcomes:
                failed = [u for u in self.dag.upstream(nid) if self.outcomes.get(u) and self.outcomes[u].status in
                          (Status.FAILED, Status.SKIPPED, Status.INTERRUPTED, Status.SHARDED, Status.PRUNED)]
                reason = "run detached: a later run goes on" if self.detached else "run stopped"
                if failed:
                    upstream = self.outcomes[failed[0]]
                    reason = (f"needs every shard of {upstream.stage}" if upstream.status is Status.SHARDED
                              else f"upstream {upstream.stage} was pruned" if upstream.status is Status.PRUNED
                              else f"upstream {upstream.stage} did not finish")
                outcome = NodeOutcome(nid, node.stage.name, node.param_set, Status.SKIPPED, reasons=(reason,))
                self.outcomes[nid] = outcome
                self.observer.node_finished(outcome)
