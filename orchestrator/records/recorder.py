"""The run recorder: a :class:`~orchestrator.engine.driver.RunObserver` that writes the run records.

Writes are batched, one transaction per run step: the run row when it starts; before a
stage is submitted, its ``running`` row together with whatever finished since the last
write (so a killed run shows which stage it was in, and every stage that finished before
it). A finished stage's record waits for that next write, or for the moment the driver
starts waiting on running stages, whichever comes first, so nothing that finished stays
unwritten while the run waits; the records of stages served from the cache, which finish
in microseconds, are written every :data:`FLUSH_EVERY` nodes / :data:`FLUSH_SECONDS` too.
The end of the run writes the rest. Commits are not fsynced (WAL, ``synchronous=NORMAL``):
a power cut may lose the last steps, never corrupt the file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..engine.dag import Dag, Node
from ..engine.driver import NodeOutcome, RunObserver, RunResult, Status
from ..engine.planner import Decision
from ..keys.cachekey import code_label
from ..processes import this_process
from ..project.loader import Project
from ..project.params import Experiment
from ..store.base import Store
from .database import close_dead_runs, connect, database_path, guarded
from .environment import command_line, git_state, package_versions, python_version
from .snapshot import take_snapshot
from .values import ArtifactInfo, ExecutionRecord, RunRecord, final_metrics

logger = logging.getLogger(__name__)

__all__ = ["RunRecorder"]

FLUSH_EVERY = 1000
FLUSH_SECONDS = 2.0
_EXECUTION_SQL = ("INSERT OR REPLACE INTO executions (run_id, node, seq, stage, param_set, key, status, started, "
                  "ended, seconds, peak_rss, reasons, outputs, log_path, error, extras) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_KEY_SQL = ("INSERT INTO keys (key, stage, param_set, code_label, code, params, inputs, cachers, extras, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING")
_ARTIFACT_SQL = ("INSERT OR IGNORE INTO artifacts (key, name, hash, object, cacher, cacher_version, size, kind) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _hashes(outputs: Mapping[str, Any]) -> str:
    """``{name: hash}`` as JSON; written by hand for plain names (the hot path of a warm run)."""
    if all(name.isidentifier() for name in outputs):
        return "{" + ",".join(f'"{name}":"{a.hash}"' for name, a in outputs.items()) + "}"
    return json.dumps({name: a.hash for name, a in outputs.items()})


class RunRecorder(RunObserver):
    """Records a run of ``experiment`` (of ``project``) in ``<cache>/runs.db`` and writes its HTML report at the end.

    Use it as a context manager around the run, so a run that ends with an unexpected
    exception is recorded as failed rather than left ``running``.
    """

    def __init__(self, store: Store, project: Project, experiment: Experiment, *, desc: str = "",
                 command: str | None = None, report: bool = True, path: Path | None = None,
                 tags: Sequence[str] = ()) -> None:
        self.tags = tuple(dict.fromkeys(str(t) for t in tags))
        self.project, self.experiment = project, experiment
        self.store = store
        self.path = Path(path) if path is not None else database_path(store.root)
        self.desc = desc
        self.command = command_line() if command is None else command
        self.write_report = report
        self.conn: sqlite3.Connection | None = None
        self.run_id = ""
        self.report_path: Path | None = None
        self._seq = 0
        self._seqs: dict[str, int] = {}
        self._started: dict[str, float] = {}
        self._pending: list[tuple[Any, ...]] = []
        self._updates: list[tuple[NodeOutcome, int]] = []
        self._finals: dict[tuple[str, str], float] = {}
        self._labels: dict[str, str] = {}
        self._run_values: dict[str, Any] = {}
        self._finished_nodes: dict[str, tuple[int, float | None, float, dict[str, str] | None, NodeOutcome]] = {}
        self._keyed: set[str] = set()  # keys whose row this run wrote when their stage started
        self._last_flush = time.monotonic()
        self._finished = False
        self._grown = False  # a search added trials: the run row's experiment and DAG are rewritten at the end

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        try:
            if self.conn is not None and exc_type is not None and not self._finished:
                status = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
                self._flush(lambda conn: self._close_run(conn, status, None))
        finally:
            self.close()

    def close(self) -> None:
        """Close the database connection."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        assert self.conn is not None
        with guarded(self.path):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    # -- events ------------------------------------------------------------------------------
    def run_started(self, run_id: str, dag: Dag) -> None:
        self.run_id = run_id
        self.conn = connect(self.path)
        root = self.project.root
        for node in dag.nodes.values():
            self._labels.setdefault(node.stage.name, code_label(node.stage))
        experiment = self.experiment
        experiment_json = {
            "names": list(experiment.names),
            "files": {str(p.stem): _relative(p, root) for p in experiment.files},
            "sets": {s.name: dict(s.values) for s in experiment.sets},
            "overrides": list(experiment.overrides),
            "description": experiment.description,
            "targets": list(dag.targets),
        }
        edges = dict.fromkeys((ref.producer, n.id, ref.artifact) for n in dag.nodes.values() for ref in n.inputs)
        dag_json = {"nodes": [[n.id, n.stage.name, n.param_set] for n in dag.nodes.values()],
                    "edges": [list(edge) for edge in edges]}
        process = this_process()
        environment = {"python": python_version(), "packages": package_versions()}
        git = git_state(root).to_dict()
        folders = [root / "stages", self.project.params_dir, root / "external", *experiment.read_files]
        with guarded(self.path):
            last = self.conn.execute("SELECT snapshot FROM runs ORDER BY rowid DESC LIMIT 1").fetchone()
        snapshot = take_snapshot(self.store, root, folders, known=json.loads(last[0]).values() if last else ())
        self._run_values = dict(
            id=run_id, description=self.desc, started=time.time(), project=str(root), cwd=str(Path.cwd()),
            command=self.command, host=process.host, user=process.user, pid=process.pid, experiment=experiment_json,
            environment=environment, git=git, snapshot=snapshot, dag=dag_json)
        v = self._run_values
        row = (run_id, self.desc, "running", v["started"], v["project"], v["cwd"], self.command, process.host,
               process.user, process.pid, process.start, _dumps(experiment_json), _dumps(environment), _dumps(git),
               _dumps(snapshot), _dumps(dag_json))
        with self._transaction() as conn:
            close_dead_runs(conn)
            conn.execute("INSERT INTO runs (id, description, status, started, project, cwd, command, host, user, "
                         "pid, pid_start, experiment, environment, git, snapshot, dag) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            conn.executemany("INSERT INTO tags (run_id, tag) VALUES (?, ?)", [(run_id, t) for t in self.tags])

    def node_started(self, node: Node, decision: Decision) -> None:
        now = time.time()
        self._started[node.id] = now
        seq = self._seq_of(node.id)
        log_path = str(self.store.workspace.log_path(self.run_id, node.id))
        row = (self.run_id, node.id, seq, node.stage.name, node.param_set, decision.key, "running", now, None,
               0.0, 0, _dumps(list(decision.reasons)), "{}", log_path, None, None)
        parts = decision.parts

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(_EXECUTION_SQL, row)
            if parts is not None and decision.key:
                conn.execute(_KEY_SQL, (decision.key, node.stage.name, node.param_set,
                                        self._labels.get(node.stage.name, ""), _dumps(dict(parts.code)),
                                        _dumps(dict(parts.params)), _dumps(dict(parts.inputs)),
                                        _dumps(dict(parts.cachers)), "{}", None))
                self._keyed.add(decision.key)

        self._flush(write)

    def node_finished(self, outcome: NodeOutcome) -> None:
        now = time.time()
        cached = outcome.status is Status.CACHED
        seq = self._seq_of(outcome.node)
        if outcome.extras:
            for name, value in final_metrics(outcome.extras).items():
                self._finals[(outcome.node, name)] = value
        error = outcome.error
        error_dict = None if error is None else {"kind": error.kind, "type": error.type, "message": error.message,
                                                 "traceback": error.traceback}
        extras = None if cached else (_dumps(dict(outcome.extras)) if outcome.extras else "{}")
        started = self._started.pop(outcome.node, None)
        if started is None and cached:
            started = now
        elif started is not None and outcome.seconds:  # (it may have waited in a pool's queue first)
            started = max(started, now - outcome.seconds)
        self._pending.append((
            self.run_id, outcome.node, seq, outcome.stage, outcome.param_set, outcome.key, outcome.status.value,
            started, now, outcome.seconds, outcome.peak_rss, _dumps(list(outcome.reasons)) if outcome.reasons else "[]",
            _hashes(outcome.outputs), outcome.log_path,
            None if error_dict is None else _dumps(error_dict), extras,
        ))
        self._finished_nodes[outcome.node] = (seq, started, now, error_dict, outcome)
        if outcome.key and (cached or outcome.status is Status.RAN):
            self._updates.append((outcome, 0 if cached else 1))
        if len(self._pending) < FLUSH_EVERY and time.monotonic() - self._last_flush < FLUSH_SECONDS:
            return  # written with the next stage's start, when the driver waits, or at the end
        self._flush()

    def waiting(self) -> None:
        if self._pending or self._updates:
            self._flush()

    def nodes_added(self, dag: Dag) -> None:
        """A search's new trials: their sets and nodes join the run's experiment and DAG (written at the end)."""
        experiment, graph = self._run_values["experiment"], self._run_values["dag"]
        for node in dag.nodes.values():
            experiment["sets"].setdefault(node.param_set, dict(node.set_values))
            graph["nodes"].append([node.id, node.stage.name, node.param_set])
            graph["edges"] += [[ref.producer, node.id, ref.artifact] for ref in node.inputs]
            self._labels.setdefault(node.stage.name, code_label(node.stage))
        self._grown = True

    def run_finished(self, result: RunResult) -> None:
        if self._grown:
            v = self._run_values
            def regrow(conn: sqlite3.Connection) -> None:
                conn.execute("UPDATE runs SET experiment = ?, dag = ? WHERE id = ?",
                             (_dumps(v["experiment"]), _dumps(v["dag"]), self.run_id))

            self._flush(regrow)
        self._flush(lambda conn: self._close_run(conn, result.status, result))
        self._finished = True
        if self.write_report:
            self._report()

    # -- writing -------------------------------------------------------------------------------
    def _seq_of(self, node_id: str) -> int:
        if node_id not in self._seqs:
            self._seqs[node_id] = self._seq
            self._seq += 1
        return self._seqs[node_id]

    def _flush(self, extra: Callable[[sqlite3.Connection], None] | None = None) -> None:
        pending, self._pending = self._pending, []
        updates, self._updates = self._updates, []
        with self._transaction() as conn:
            if pending:
                conn.executemany(_EXECUTION_SQL, pending)
            if updates:
                self._write_keys(conn, updates)
            if extra is not None:
                extra(conn)
        self._last_flush = time.monotonic()

    def _write_keys(self, conn: sqlite3.Connection, updates: list[tuple[NodeOutcome, int]]) -> None:
        """Key parts, extras and artifacts: for stages that ran, and cached keys not recorded yet."""
        cached = [o.key for o, ran in updates if not ran and o.key]
        known: set[str] = set()
        for start in range(0, len(cached), 500):
            chunk = cached[start:start + 500]
            known.update(r[0] for r in conn.execute(
                f"SELECT key FROM keys WHERE key IN ({','.join('?' * len(chunk))})", chunk))
        artifacts = []
        for outcome, ran in updates:
            key = outcome.key
            assert key is not None
            if not ran and key in known:
                continue
            record = None if ran else self.store.get_record(key)
            parts: Mapping[str, Any] = dict(record.parts) if record is not None else {}
            extras = _dumps(dict(outcome.extras)) if outcome.extras else "{}"
            if not (ran and key in self._keyed):  # (a stage that ran had its key's row written as it started)
                conn.execute(_KEY_SQL, (key, outcome.stage, outcome.param_set, self._labels.get(outcome.stage, ""),
                                        *(_dumps(parts[name]) if name in parts else "{}"
                                          for name in ("code", "params", "inputs", "cachers")),
                                        extras, record.created if record is not None else time.time()))
            if ran:
                conn.execute("UPDATE keys SET extras = ?, created = ?, run_id = coalesce(run_id, ?), "
                             "node = coalesce(node, ?) WHERE key = ?",
                             (extras, time.time(), self.run_id, outcome.node, key))
            known.add(key)
            artifacts += [(key, name, a.hash, a.object, a.cacher, a.cacher_version, a.size, a.kind)
                          for name, a in outcome.outputs.items()]
        if artifacts:
            conn.executemany(_ARTIFACT_SQL, artifacts)

    def _close_run(self, conn: sqlite3.Connection, status: str, result: RunResult | None) -> None:
        counts: dict[str, int] = {}
        if result is not None:
            for outcome in result.outcomes:
                counts[outcome.status.value] = counts.get(outcome.status.value, 0) + 1
        per_metric: dict[str, list[float]] = {}
        for (_, name), value in self._finals.items():
            per_metric.setdefault(name, []).append(value)
        metrics = {name: sum(values) / len(values) for name, values in per_metric.items()}
        now = time.time()
        started = conn.execute("SELECT started FROM runs WHERE id = ?", (self.run_id,)).fetchone()
        seconds = result.seconds if result is not None else (now - started[0] if started else None)
        conn.execute("UPDATE runs SET status = ?, ended = ?, seconds = ?, counts = ?, metrics = ?, "
                     "finished_seq = (SELECT coalesce(max(finished_seq), 0) + 1 FROM runs) WHERE id = ?",
                     (status, now, seconds, _dumps(counts), _dumps(metrics), self.run_id))
        self._run_values.update(status=status, ended=now, seconds=seconds, counts=counts, metrics=metrics)
        conn.execute("UPDATE executions SET status = 'interrupted', ended = ? WHERE run_id = ? AND status = 'running'",
                     (now, self.run_id))

    def _report(self) -> None:
        from .report import render_page, report_path, write_html

        path = report_path(self.store.root, self.run_id)
        try:
            run = RunRecord(**self._run_values, report=str(path))
            statuses = {node: entry[4].status.value for node, entry in self._finished_nodes.items()}
            seconds = {node: entry[4].seconds for node, entry in self._finished_nodes.items()}
            write_html(path, render_page(run, self._report_executions(), statuses=statuses, seconds=seconds))
            with self._transaction() as conn:
                conn.execute("UPDATE runs SET report = ? WHERE id = ?", (str(path), self.run_id))
        except Exception as exc:  # the run itself is recorded; only its page is missing
            logger.error("could not write the report of run %s: %s. Fix: experiment report %s",
                         self.run_id, exc, self.run_id)
            return
        self.report_path = path


    def _report_executions(self) -> list[ExecutionRecord]:
        """The executions a report shows in full: every one that did not come from the cache or has
        reportables, and the first cached ones (a report lists at most ROW_LIMIT rows)."""
        from .report import ROW_LIMIT

        chosen = []
        room = ROW_LIMIT
        for seq, started, ended, error, o in sorted(self._finished_nodes.values(), key=lambda entry: entry[0]):
            cached = o.status is Status.CACHED
            if cached and not o.extras and room <= 0:
                continue
            room -= cached
            outputs = {name: ArtifactInfo(name, a.hash, a.object, a.cacher, a.cacher_version, a.size, a.kind)
                       for name, a in o.outputs.items()}
            chosen.append(ExecutionRecord(self.run_id, o.node, seq, o.stage, o.param_set, o.key, o.status.value,
                                          started, ended, o.seconds, o.peak_rss, tuple(o.reasons), outputs,
                                          o.log_path, error, o.extras))
        return chosen


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
