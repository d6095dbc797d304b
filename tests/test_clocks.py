"""No decision trusts another machine's wall clock: `gc --keep-last` keeps the run the database saw last."""

from __future__ import annotations

import json
import os
import sqlite3
import time

from conftest import statuses

FILES = {
    "stages/__init__.py": "",
    "stages/s.py": "from orchestrator import stage\n\n\n@stage(outputs=['out'])\ndef make(n: int = 1):\n    return [n] * 10\n",
    "params/p.yaml": "params: {n: 1}\n",
}


def test_gc_keep_last_keeps_the_latest_run_when_its_clock_was_behind(make_project):
    proj = make_project(FILES)
    proj.run_json("p", "--set", "n=1")
    latest = proj.run_json("p", "--set", "n=2")["run_id"]
    cache = proj.root / "cache"
    ten_days = time.time() - 10 * 86400
    for path in (cache / "keys").rglob("*.json"):  # both results were stored long ago
        record = json.loads(path.read_text())
        record["created"] = ten_days
        os.chmod(path, 0o644)
        path.write_text(json.dumps(record))
    with sqlite3.connect(cache / "runs.db") as conn:  # the latest run's machine had its clock 20 days behind
        conn.execute("UPDATE runs SET started = started - 20 * 86400, ended = ended - 20 * 86400 WHERE id = ?",
                     (latest,))
    proj.experiment("cache", "gc", "--keep-last", "1")
    assert statuses(proj.run_json("p", "--set", "n=2")) == {("make", "p"): "cached"}
    # `last~1` (before the run just above) is the run the database received last, whatever its clock said
    assert json.loads(proj.experiment("show", "last~1", "--json").stdout)["id"] == latest
