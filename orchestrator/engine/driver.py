"""The driver: walks the DAG as results arrive, decides each node, records what happened.

A ready-set loop: a node is decided the moment all its inputs are known, so early cutoff
falls out naturally (a rerun stage whose outputs are byte-identical leaves its consumers'
keys unchanged, hence cached). Tasks go to an executor; only the driver writes key
records, so a failing worker can never corrupt the store's bookkeeping.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import replace
from typing import Any

from ..errors import ResourceError, StoreError
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
from .task import FailureKind, TaskError, TaskResult, task_for

logger = logging.getLogger(__name__)

__all__ = ["NodeOutcome", "Observers", "RunObserver", "RunResult", "RunStatus", "Status", "execute_dag", "new_run_id"]

# the values a run produces live in outcomes.py; they are re-exported here for convenience

MAX_CORRUPTION_RETRIES = 2
LEASE_POLL = 0.25  # seconds between checks on stages another run is computing
REFS_EVERY = 1.0  # seconds between writes of the plan's key parts, so a killed run still explains its stages


def new_run_id() -> str:
    """A sortable, unique run id such as ``20261122-035412-1a2b``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]


class _Driver:
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
        self.ledger = resources
        self.slots = max(1, executor.capacity) + max(0, executor.prefetch)  # tasks in flight
        self.feed = feed
        self.detach = detach
        self.detached = False
        self.grants: dict[str, Grant] = {}  # running node -> what it holds
        self.parked: dict[str, Decision] = {}  # decided to run, waiting for resources a running node holds
        self.unparked: dict[str, Decision] = {}  # parked ones back in the ready queue, with their decision

    def run(self) -> None:
        with self.claims:
            while True:
                if self.feed is not None and not self.stopped:
                    self._grow()
                if not (self.ready or self.running or (self.blocked and not self.stopped)
                        or (self.parked and not self.stopped)):
                    break
                if self.parked and not self.running:  # (cannot stay parked: nothing would give resources back)
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
                        self._give_early(nid, future)
                    while self.ready and not self.stopped and len(self.running) < self.slots:
                        self._start(self.ready.popleft())
                    self.executor.flush()
                for future, nid, decision in finished:
                    self._finish(nid, decision, future)

    def _give_early(self, nid: str, future: Future[TaskResult]) -> None:
        """A node that succeeded gives its resources back before its bookkeeping (a failed one may retry)."""
        grant = self.grants.get(nid)
        if grant is None or future.exception() is not None or future.result().error is not None:
            return
        self.grants[nid] = replace(grant, returned=True)
        assert self.ledger is not None
        self.ledger.give(grant)
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
        decision = self.unparked.pop(nid, None) or decide(
            node, self.fingerprints[node.stage.name], hashes, self.store, forced=node.stage.name in self.forced
        )
        grant: Grant | None = None
        if decision.action is Action.RUN and self.ledger is not None:
            grant = self._admit(node, decision)
            if grant is None:
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
        if grant is not None:
            self.grants[nid] = grant
        self._submit(node, decision)

    def _admit(self, node: Node, decision: Decision) -> Grant | None:
        """Reserve what ``node`` asks for, or park it until a running node gives resources back."""
        assert self.ledger is not None
        grant = self.ledger.take(self.ledger.request(node.stage))
        if grant is None:
            if not self.running:  # nothing will give anything back (checked before the run: should not happen)
                raise ResourceError(f"stage {node.stage.name!r} [{node.param_set}] asks for more than this node "
                                    "has free. Fix: lower its resources= or free GPUs.")
            self.parked[node.id] = decision
            self._show_resources()
        return grant

    def _give(self, nid: str, grant: Grant | None) -> None:
        if grant is not None and self.ledger is not None:
            self.ledger.give(grant)
            self._unpark()

    def _unpark(self) -> None:
        """Resources came back: the parked nodes that fit now go first in line, in the order they parked."""
        assert self.ledger is not None
        fitting = [nid for nid in self.parked if not self.running or self.ledger.fits(self.dag.nodes[nid].stage)]
        self.ready.extendleft(reversed(fitting))
        for nid in fitting:
            self.unparked[nid] = self.parked.pop(nid)

    def _show_resources(self) -> None:
        self.observer.resources({nid: grant.visible for nid, grant in self.grants.items() if grant.gpus},
                                tuple(self.parked))

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
        if self.refs and time.monotonic() - self.refs_written > REFS_EVERY:
            self.write_refs()  # before a stage that may run long (and be killed), not only at the end
        task = task_for(node, decision, {r.producer: self.outputs[r.producer] for r in node.inputs}, self.store,
                        run_id=self.run_id, project_root=self.project_root, options=self.options,
                        code=self.fingerprints[node.stage.name].digest)
        grant = self.grants.get(nid)
        if self.ledger is not None and self.ledger.has_gpus:
            task = replace(task, gpus=grant.visible if grant is not None else "")
            if grant is not None and grant.gpus:
                logger.info("%s [%s] runs on GPU %s%s", node.stage.name, node.param_set, grant.visible,
                            f" ({grant.share:g} of it)" if grant.share < 1 else "")
        self.observer.node_started(node, decision)
        self.submitting = (nid, decision)
        future = self.executor.submit(task)
        self.submitting = None
        self.running[future] = (nid, decision)
        if self.ledger is not None:
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
        grant = self.grants.pop(nid, None)
        if grant is not None:
            if grant.gpus:  # the run record keeps the devices of each execution
                result = replace(result, extras={**result.extras, "gpus": grant.visible})
            if not grant.returned:
                self._give(nid, grant)
            else:
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
        try:
            self.store.put_refs(self.refs)
        except StoreError as exc:
            logger.warning("could not remember this run's key parts for explanations: %s", exc)
            return
        self.refs = {}
        self.refs_written = time.monotonic()

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


def execute_dag(
    dag: Dag,
    fingerprints: Mapping[str, CodeFingerprint],
    store: Store,
    executor: Executor,
    *,
    forced: Iterable[str] = (),
    keep_going: bool = False,
    observer: RunObserver | None = None,
    run_id: str | None = None,
    project_root: str = "",
    options: RunOptions | Mapping[str, Any] | None = None,
    resources: Ledger | None = None,
    feed: NodeFeed | None = None,
    detach: bool = False,
) -> RunResult:
    """Run every node of ``dag`` that is not cached; stop at the first failure unless ``keep_going``.

    ``resources`` (one-node executors) admits each stage by the GPUs, cores and memory it asks for
    and reserves specific GPUs for it (see :mod:`orchestrator.engine.admission`). ``feed`` adds nodes
    while the run goes (a search's trials, see :class:`~orchestrator.engine.feed.NodeFeed`). ``detach``
    returns once the first stages are submitted, leaving them to the cluster (status ``detached``).

    Ctrl-C (KeyboardInterrupt) ends the run with status ``"interrupted"``; every stage that
    finished before stays stored, so the next run resumes after it.
    """
    observer = observer or RunObserver()
    run_id = run_id or new_run_id()
    store.prepare()
    store.workspace.clean_tmp()
    started = time.perf_counter()
    driver = _Driver(dag, fingerprints, store, executor, forced=forced, keep_going=keep_going,
                     observer=observer, project_root=project_root, run_id=run_id, options=RunOptions.of(options),
                     resources=resources, feed=feed, detach=detach)
    observer.run_started(run_id, dag)
    status = RunStatus.SUCCEEDED
    try:
        driver.run()
    except KeyboardInterrupt:
        status = RunStatus.INTERRUPTED
        driver.interrupt()
    if driver.detached:
        status = RunStatus.DETACHED
        driver.leave()
    driver.skip_rest()
    driver.write_refs()
    if status is not RunStatus.INTERRUPTED and any(o.status is Status.FAILED for o in driver.outcomes.values()):
        status = RunStatus.FAILED
    position = {nid: index for index, nid in enumerate(driver.dag.nodes)}  # (a feed may have added nodes)
    ordered = sorted(driver.outcomes.values(), key=lambda o: position[o.node])
    result = RunResult(run_id, status, tuple(ordered), time.perf_counter() - started, store.url)
    observer.run_finished(result)
    return result
