"""Run a DAG: the entry point around the :class:`~orchestrator.engine.driver.Driver` loop."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from ..executors import Executor
from ..keys.fingerprint import CodeFingerprint
from ..store.base import Store
from .admission import Ledger
from .dag import Dag
from .driver import Driver
from .feed import NodeFeed
from .options import RunOptions
from .outcomes import RunObserver, RunResult, RunStatus, Status

__all__ = ["execute_dag", "new_run_id"]


def new_run_id() -> str:
    """A sortable, unique run id such as ``20261122-035412-1a2b``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]


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
    driver = Driver(dag, fingerprints, store, executor, forced=forced, keep_going=keep_going,
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
