"""Reading the run records: runs, their stage executions, key parts and artifacts, as values.

A run still marked ``running`` whose process is gone (killed with SIGKILL, a power cut)
is reported as ``interrupted``, and so are its stages that were marked running: a killed
run never looks like a success.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import RecordNotFound, did_you_mean
from ..processes import process_alive
from .database import connect_read_only, database_path, guarded
from .values import ArtifactInfo, ExecutionRecord, RunRecord

__all__ = ["History", "open_history"]

def _json(text: str | None, default: Any) -> Any:
    if not text or text in ("{}", "[]"):
        return default if not text else ({} if text == "{}" else [])
    try:
        return json.loads(text)
    except ValueError:
        return default


class History:
    """Queries over one run records database (empty when the file does not exist yet).

    Only reads: the file is opened read-only (:func:`~orchestrator.records.database.connect_read_only`),
    so the records of a read-only store can be browsed.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection | None = None) -> None:
        self.path = Path(path)
        self._conn = conn
        self._owned = conn is None

    @property
    def exists(self) -> bool:
        """True when the database holds (or can hold) records."""
        return self._conn is not None or self.path.exists()

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection (opened on first use, read-only)."""
        if self._conn is None:
            self._conn = connect_read_only(self.path)
        return self._conn

    def close(self) -> None:
        """Close the connection if this object opened it."""
        if self._owned and self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with guarded(self.path):
            cursor = self.conn.execute(sql, tuple(args))
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()

    # -- runs ----------------------------------------------------------------------------
    def runs(self, *, limit: int | None = None, status: str | None = None, tag: str | None = None) -> list[RunRecord]:
        """Runs, newest first; ``status`` filters on the effective status, ``tag`` on the run's tags."""
        if not self.exists:
            return []
        where, args = "", []
        if status:
            where, args = "WHERE status IN (?, 'running')", [status]
        # newest first in the order the database received them, not by any machine's clock
        rows = self._query(f"SELECT *, rowid AS seq FROM runs {where} ORDER BY rowid DESC", args)
        tags = self._tags()
        records = (self._run(row, tags) for row in rows)
        chosen = [r for r in records if (not status or r.status == status) and (not tag or tag in r.tags)]
        return chosen[:limit] if limit else chosen

    def run(self, ref: str) -> RunRecord:
        """The run ``ref`` names: an id, a unique id prefix, or ``last`` (``last~N``: N runs before).

        Raises:
            RecordNotFound: no run matches, or a prefix matches several.
        """
        if not self.exists:
            raise RecordNotFound(f"no runs recorded yet in {self.path.parent}. Fix: experiment run NAME first.")
        ref = ref.strip()
        if ref == "last" or ref.startswith("last~"):
            back = int(ref[5:]) if ref[5:].isdigit() else 0
            rows = self._query("SELECT * FROM runs ORDER BY rowid DESC LIMIT 1 OFFSET ?", [back])
            if not rows:
                raise RecordNotFound(f"there is no run {ref!r} in {self.path}. Fix: experiment runs lists them.")
            return self._run(rows[0])
        rows = self._query("SELECT * FROM runs WHERE substr(id, 1, ?) = ? ORDER BY rowid DESC", [len(ref), ref])
        if len(rows) == 1:
            return self._run(rows[0])
        if len(rows) > 1:
            ids = ", ".join(r["id"] for r in rows[:5])
            raise RecordNotFound(f"run id prefix {ref!r} matches {len(rows)} runs ({ids}). Fix: type more of the id.")
        recent = [r["id"] for r in self._query("SELECT id FROM runs ORDER BY rowid DESC LIMIT 200")]
        raise RecordNotFound(f"no run {ref!r} in {self.path}.{did_you_mean(ref, recent)} "
                             "Fix: experiment runs lists the run ids (or use 'last').")

    def last_run_with(self, stage: str) -> RunRecord:
        """The newest run that has an execution of ``stage``.

        Raises:
            RecordNotFound: no recorded run has that stage (with close names).
        """
        if self.exists:
            rows = self._query("SELECT r.* FROM runs r CROSS JOIN executions e ON e.run_id = r.id WHERE e.stage = ? "
                               "ORDER BY r.started DESC LIMIT 1", [stage])
            if rows:
                return self._run(rows[0])
        stages = [r["stage"] for r in self._query("SELECT DISTINCT stage FROM executions")] if self.exists else []
        raise RecordNotFound(f"no recorded run has a stage {stage!r}.{did_you_mean(stage, stages)} "
                             f"Recorded stages: {', '.join(sorted(stages)) or 'none (run an experiment first)'}.")

    def _tags(self, run_id: str | None = None) -> dict[str, tuple[str, ...]]:
        """run id -> its tags (of one run, or of every run)."""
        sql, args = ("SELECT run_id, tag FROM tags WHERE run_id = ? ORDER BY tag", [run_id]) if run_id else (
            "SELECT run_id, tag FROM tags ORDER BY tag", [])
        found: dict[str, list[str]] = {}
        for row in self._query(sql, args):
            found.setdefault(row["run_id"], []).append(row["tag"])
        return {k: tuple(v) for k, v in found.items()}

    def _run(self, row: sqlite3.Row, tags: Mapping[str, tuple[str, ...]] | None = None) -> RunRecord:
        if tags is None:
            tags = self._tags(row["id"])
        status = row["status"]
        if status == "running" and process_alive(row["host"], row["pid"], row["pid_start"]) is False:
            status = "interrupted"
        return RunRecord(
            id=row["id"], description=row["description"], status=status, started=row["started"],
            ended=row["ended"], seconds=row["seconds"], project=row["project"], cwd=row["cwd"],
            command=row["command"], host=row["host"], user=row["user"], pid=row["pid"],
            experiment=_json(row["experiment"], {}), environment=_json(row["environment"], {}),
            git=_json(row["git"], {}), snapshot=_json(row["snapshot"], {}), dag=_json(row["dag"], {}),
            counts=_json(row["counts"], {}), metrics=_json(row["metrics"], {}), report=row["report"],
            finished_seq=row["finished_seq"] if "finished_seq" in row.keys() else None,
            tags=tags.get(row["id"], ()), notes=tuple(_json(row["notes"], [])) if "notes" in row.keys() else (),
        )

    # -- executions ------------------------------------------------------------------------
    def executions(self, run: RunRecord, *, stage: str | None = None, param_set: str | None = None,
                   parts: bool = True) -> list[ExecutionRecord]:
        """The stage executions of ``run`` in the order they finished (optionally one stage / set)."""
        sql = ("SELECT e.*, k.code_label, k.code, k.params, k.inputs, k.cachers, k.extras AS key_extras "
               "FROM executions e LEFT JOIN keys k ON e.key = k.key WHERE e.run_id = ?")
        args: list[Any] = [run.id]
        if stage is not None:
            sql += " AND e.stage = ?"
            args.append(stage)
        if param_set is not None:
            sql += " AND e.param_set = ?"
            args.append(param_set)
        rows = self._query(sql + " ORDER BY e.seq", args)
        artifacts = self._artifacts({r["key"] for r in rows if r["key"]})
        dead = run.status == "interrupted"
        return [self._execution(row, artifacts, dead, parts) for row in rows]

    def _artifacts(self, keys: set[str]) -> dict[tuple[str, str, str], ArtifactInfo]:
        found: dict[tuple[str, str, str], ArtifactInfo] = {}
        ordered = sorted(keys)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._query(f"SELECT * FROM artifacts WHERE key IN ({marks})", chunk):
                found[(row["key"], row["name"], row["hash"])] = ArtifactInfo(
                    row["name"], row["hash"], row["object"], row["cacher"], row["cacher_version"],
                    row["size"], row["kind"])
        return found

    @staticmethod
    def _execution(row: sqlite3.Row, artifacts: Mapping[tuple[str, str, str], ArtifactInfo], dead: bool,
                   with_parts: bool) -> ExecutionRecord:
        outputs = {name: artifacts.get((row["key"], name, digest), ArtifactInfo(name, digest))
                   for name, digest in _json(row["outputs"], {}).items()}
        extras = _json(row["extras"], None)
        if extras is None:  # a cached execution shows what its key stored
            extras = _json(row["key_extras"], {})
        parts = None
        if with_parts and row["code"] is not None:
            parts = {name: _json(row[name], {}) for name in ("code", "params", "inputs", "cachers")}
            parts["stage"] = row["stage"]
        status = row["status"]
        if dead and status == "running":
            status = "interrupted"
        return ExecutionRecord(
            run_id=row["run_id"], node=row["node"], seq=row["seq"], stage=row["stage"],
            param_set=row["param_set"], key=row["key"], status=status, started=row["started"],
            ended=row["ended"], seconds=row["seconds"], peak_rss=row["peak_rss"],
            reasons=tuple(_json(row["reasons"], [])), outputs=outputs, log_path=row["log_path"],
            error=_json(row["error"], None), extras=extras, parts=parts, code_label=row["code_label"] or "",
        )

    def stage_executions(self, run: RunRecord, stage: str, param_set: str | None = None) -> list[ExecutionRecord]:
        """The executions of ``stage`` in ``run``; raises with suggestions when there are none."""
        found = self.executions(run, stage=stage, param_set=param_set)
        if found:
            return found
        everything = self.executions(run, parts=False)
        stages = sorted({e.stage for e in everything})
        if stage not in stages:
            raise RecordNotFound(f"run {run.id} has no stage {stage!r}.{did_you_mean(stage, stages)} "
                                 f"Stages: {', '.join(stages) or 'none'}.")
        sets = sorted({e.param_set for e in everything if e.stage == stage})
        raise RecordNotFound(f"stage {stage!r} did not run for param set {param_set!r} in run {run.id}."
                             f"{did_you_mean(param_set or '', sets)} Fix: --set one of {', '.join(sets)}.")

    def history_of(self, stage: str, param_set: str | None, before: float, *,
                   computed: bool = False) -> Iterator[ExecutionRecord]:
        """Earlier executions of ``stage`` (for ``param_set``, or any set) that had a result, newest first:
        that computed and stored it (``computed``), or that also reused one."""
        statuses = "('ran')" if computed else "('ran', 'cached')"
        sql = ("SELECT e.*, k.code_label, k.code, k.params, k.inputs, k.cachers, k.extras AS key_extras "
               "FROM runs r CROSS JOIN executions e ON e.run_id = r.id LEFT JOIN keys k ON e.key = k.key "
               f"WHERE r.started < ? AND e.stage = ? AND e.status IN {statuses}")
        args: list[Any] = [before, stage]
        if param_set is not None:
            sql += " AND e.param_set = ?"
            args.append(param_set)
        for row in self._query(sql + " ORDER BY r.started DESC LIMIT 20", args):
            yield self._execution(row, {}, False, True)

    def first_ran(self, key: str) -> ExecutionRecord | None:
        """The execution that computed the result stored under ``key`` (the first that ran it)."""
        rows = self._query(
            "SELECT e.*, k.code_label, k.code, k.params, k.inputs, k.cachers, k.extras AS key_extras "
            "FROM keys k JOIN executions e ON e.run_id = k.run_id AND e.node = k.node WHERE k.key = ?", [key])
        if not rows:
            return None
        return self._execution(rows[0], self._artifacts({key}), False, True)

    # -- artifacts ----------------------------------------------------------------------------
    def producers(self, digest_or_prefix: str) -> list[tuple[str, ArtifactInfo]]:
        """``(key, artifact)`` pairs whose artifact hash (else stored object hash) starts with the argument."""
        prefix = digest_or_prefix.lower()
        rows = self._query("SELECT * FROM artifacts WHERE hash >= ? AND hash < ?", [prefix, prefix + "g"])
        if not rows:  # an object hash (no index: a scan, only when the artifact hash did not match)
            rows = self._query("SELECT * FROM artifacts WHERE substr(object, 1, ?) = ?", [len(prefix), prefix])
        return [(r["key"], ArtifactInfo(r["name"], r["hash"], r["object"], r["cacher"], r["cacher_version"],
                                        r["size"], r["kind"])) for r in rows]

    def artifact_names(self) -> list[str]:
        """Every artifact name ever recorded."""
        return [r["name"] for r in self._query("SELECT DISTINCT name FROM artifacts ORDER BY name")]

    def key_parts(self, key: str) -> Mapping[str, Any] | None:
        """The recorded key parts (and stage, param set) of ``key``."""
        rows = self._query("SELECT * FROM keys WHERE key = ?", [key])
        if not rows:
            return None
        row = rows[0]
        parts = {name: _json(row[name], {}) for name in ("code", "params", "inputs", "cachers")}
        return {**parts, "stage": row["stage"], "param_set": row["param_set"], "code_label": row["code_label"]}


def open_history(cache_dir: Path) -> History:
    """The run records of the store at ``cache_dir``."""
    return History(database_path(cache_dir))
