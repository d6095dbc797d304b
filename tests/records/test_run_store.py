"""The SQLite run store: what a run records, killed runs, damaged databases, migrations."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time

from sample_projects import SLOW

from orchestrator.records.database import SCHEMA_VERSION


def show(project, run="last") -> dict:
    return json.loads(project.experiment("show", run, "--json").stdout)


def test_database_is_wal_with_schema_version(project):
    project.run_json("base")
    conn = sqlite3.connect(project.root / "cache" / "runs.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "executions", "keys", "artifacts"} <= tables
    conn.close()


def test_run_records_params_environment_git_and_source_snapshot(project):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=project.root, check=True)
    subprocess.run([*git, "add", "stages", "params"], cwd=project.root, check=True)
    subprocess.run([*git, "commit", "-qm", "start"], cwd=project.root, check=True)
    project.edit("stages/helpers.py", "OFFSET = 10", "OFFSET = 11")
    summary = project.run_json("grid", "--set", "n=4", "--desc", "first try <b>")
    run = show(project)
    assert run["id"] == summary["run_id"] and run["status"] == "succeeded"
    assert run["title"] == "first try <b>"
    assert run["command"].startswith("experiment run grid --set n=4")
    assert run["experiment"]["sets"] == {"grid[scale=1]": {"n": 4, "scale": 1}, "grid[scale=2]": {"n": 4, "scale": 2}}
    assert run["experiment"]["files"] == {"grid": "params/grid.yaml"}
    assert run["pid"] > 0 and run["host"] and run["environment"]["packages"]["orchestrator"]
    assert len(run["git"]["commit"]) == 40 and run["git"]["dirty"] is True
    assert "+OFFSET = 11" in run["git"]["diff"]
    snapshot = run["snapshot"]
    assert {"stages/pipeline.py", "stages/helpers.py", "params/grid.yaml", "params/base.yaml"} <= set(snapshot)
    stored = project.root / "cache" / "objects" / snapshot["stages/helpers.py"][:2] / snapshot["stages/helpers.py"]
    assert "OFFSET = 11" in stored.read_text()
    stages = {(e["stage"], e["param_set"]): e for e in run["executions"]}
    total = stages[("total", "grid[scale=2]")]
    assert total["status"] == "ran" and total["key"] and total["seconds"] >= 0 and total["peak_rss"] > 0
    assert set(total["parts"]) >= {"code", "params", "inputs", "cachers"}
    assert set(total["outputs"]["total"]) >= {"hash", "size", "cacher"}
    assert stages[("make_numbers", "grid[scale=2]")]["status"] == "cached"


def test_warm_run_records_every_stage_as_cached(project):
    project.run_json("base")
    second = project.run_json("base")
    run = show(project)
    assert run["id"] == second["run_id"]
    assert {e["status"] for e in run["executions"]} == {"cached"}
    assert run["counts"] == {"cached": 5}
    assert all(e["outputs"] for e in run["executions"])
    listing = json.loads(project.experiment("runs", "--json").stdout)
    assert [r["id"] for r in listing][:1] == [second["run_id"]] and len(listing) == 2


def test_killed_run_is_listed_as_interrupted_never_succeeded(make_project):
    proj = make_project(SLOW)
    proc = proj.start("run", "p")
    proj.wait_logged("second-start")
    running = json.loads(proj.experiment("runs", "--json").stdout)
    assert [r["status"] for r in running] == ["running"]  # alive: honestly still running
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    runs = json.loads(proj.experiment("runs", "--json").stdout)
    assert [r["status"] for r in runs] == ["interrupted"]
    assert json.loads(proj.experiment("runs", "--status", "succeeded", "--json").stdout) == []
    assert len(json.loads(proj.experiment("runs", "--status", "interrupted", "--json").stdout)) == 1
    run = show(proj, runs[0]["id"])
    assert {e["stage"]: e["status"] for e in run["executions"]} == {"first": "ran", "second": "interrupted"}
    text = proj.experiment("show", runs[0]["id"]).stdout
    assert "INTERRUPTED second" in text
    db = sqlite3.connect(proj.root / "cache" / "runs.db")
    assert db.execute("SELECT status FROM runs").fetchall() == [("running",)]  # what the killed process left
    proj.experiment("run", "p", "--target", "a")  # the next run on the cache writes the verdict down
    assert db.execute("SELECT status FROM runs WHERE id = ?", (runs[0]["id"],)).fetchall() == [("interrupted",)]
    db.close()


def test_a_finished_stage_is_recorded_while_the_run_waits_on_another(make_project):
    """Records are batched, but never held back while the driver waits on a long stage."""
    proj = make_project({
        "stages/__init__.py": "",
        "stages/two.py": '''
            import os
            import time

            from orchestrator import stage


            @stage(outputs=["quick"])
            def quick():
                return 1


            @stage(outputs=["slow"])
            def slow():
                release = os.environ["RUNS_LOG"] + ".release"
                while not os.path.exists(release):
                    time.sleep(0.05)
                return 2
        ''',
        "params/p.yaml": "params: {}\n",
    })
    proc = proj.start("run", "p", "--jobs", "2")
    recorded = None
    try:
        deadline = time.time() + 60
        while time.time() < deadline and recorded != ("ran", "running"):
            time.sleep(0.1)
            if (proj.root / "cache" / "runs.db").exists():
                db = sqlite3.connect(proj.root / "cache" / "runs.db")
                try:
                    rows = dict(db.execute("SELECT stage, status FROM executions").fetchall())
                except sqlite3.OperationalError:  # not created yet
                    rows = {}
                db.close()
                recorded = (rows.get("quick"), rows.get("slow"))
    finally:
        (proj.root / "runs.log.release").touch()
        assert proc.wait(timeout=60) == 0
    assert recorded == ("ran", "running")


def test_damaged_database_is_a_clear_error_with_the_fix(project):
    project.run_json("base")
    db = project.root / "cache" / "runs.db"
    for suffix in ("-wal", "-shm"):
        (project.root / "cache" / f"runs.db{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    for args in (["runs"], ["show", "last"], ["run", "base"]):
        proc = project.experiment(*args, check=1)
        assert "damaged" in proc.stderr and f"mv {db}" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_truncated_database_is_not_an_empty_history(project):
    project.run_json("base")
    db = project.root / "cache" / "runs.db"
    for suffix in ("-wal", "-shm"):
        (project.root / "cache" / f"runs.db{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"")
    for args in (["runs"], ["run", "base"]):
        proc = project.experiment(*args, check=1)
        assert "empty (0 bytes)" in proc.stderr and "truncated" in proc.stderr and f"mv {db}" in proc.stderr
    assert db.stat().st_size == 0  # left as it was, for salvage


def test_database_from_a_newer_version_is_refused(project):
    project.run_json("base")
    conn = sqlite3.connect(project.root / "cache" / "runs.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    proc = project.experiment("runs", check=1)
    assert "newer" in proc.stderr and "pip install --upgrade" in proc.stderr


def test_no_history_yet_is_said_plainly(project):
    assert "No runs recorded" in project.experiment("runs").stdout
    proc = project.experiment("show", "last", check=2)
    assert "no runs recorded yet" in proc.stderr and "experiment run" in proc.stderr


def test_peak_memory_is_each_stages_own(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/m.py": '''
            import numpy as np
            from orchestrator import stage

            @stage(outputs=["big"])
            def big():
                block = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
                return float(block.sum())

            @stage(inputs=["big"], outputs=["small"])
            def small(big):
                return big + 1
        ''',
        "params/p.yaml": "params: {}\n",
    })
    proj.run_json("p")
    shown = json.loads(proj.experiment("show", "last", "--json").stdout)
    peaks = {e["stage"]: e["peak_rss"] for e in shown["executions"]}
    assert peaks["big"] > 300 * 2**20
    assert peaks["small"] < 200 * 2**20  # not the earlier stage's peak
