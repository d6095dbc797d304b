"""Garbage collection: only what no kept run reaches goes, and never under a running run."""

from __future__ import annotations

import json
import os
import subprocess
import time

from conftest import EXPERIMENT, statuses


def _gc(project, *args, check=0):
    return json.loads(project.experiment("cache", "gc", "--json", *args, check=check).stdout)


def _age_everything(cache, seconds, *, runs=True):
    """Pretend everything in the store (and, with ``runs``, every recorded run) was written ``seconds`` ago."""
    past = time.time() - seconds
    for path in cache.rglob("*"):
        os.utime(path, (past, past), follow_symlinks=False)
    for record in (cache / "keys").glob("*/*.json"):
        data = json.loads(record.read_text())
        data["created"] = past
        os.chmod(record, 0o644)
        record.write_text(json.dumps(data))
    database = cache / "runs.db"
    if runs and database.exists():
        import sqlite3

        with sqlite3.connect(database) as conn:
            conn.execute("UPDATE runs SET started = ?, ended = ?", (past, past))
        conn.close()


def test_gc_without_limits_removes_only_orphans(project):
    project.run_json("base")
    from orchestrator.store.local import LocalStore

    store = LocalStore(project.root / "cache")
    orphan = store.workspace.staging_path()
    orphan.write_bytes(b"nobody references me")
    digest, _, _ = store.ingest(orphan)
    _age_everything(project.root / "cache", 2 * 3600)
    report = _gc(project)
    assert report["dropped_objects"] == 1 and report["dropped_keys"] == 0
    assert not store.has_object(digest)
    assert json.loads(project.experiment("cache", "verify", "--json").stdout)["problems"] == []
    again = project.run_json("base")
    assert {n["status"] for n in again["nodes"]} == {"cached"}


def test_keep_last_keeps_the_newest_runs_results_only(project):
    big = ("--set", "n=3000")  # lists big enough for object files of their own
    project.run_json("base", *big, "--set", "scale=2")
    project.run_json("base", *big, "--set", "scale=3")
    _age_everything(project.root / "cache", 2 * 3600)
    project.run_json("base", *big)  # the newest run: scale=1
    project.ran()
    dry = _gc(project, "--keep-last", "1", "--dry-run")
    assert dry["dropped_keys"] == 6 and dry["dry_run"]  # double_all, total, summary for 2 old scales
    plan = json.loads(project.experiment("plan", "base", *big, "--set", "scale=2", "--json").stdout)
    assert plan[1]["action"] == "CACHED"
    report = _gc(project, "--keep-last", "1")
    assert report["dropped_keys"] == 6 and report["dropped_objects"] == 2  # the two old `doubled` lists
    plan = json.loads(project.experiment("plan", "base", *big, "--set", "scale=2", "--json").stdout)
    assert {p["stage"]: p["action"] for p in plan}["double_all"] == "RUN"
    newest = project.run_json("base", *big)
    assert {n["status"] for n in newest["nodes"]} == {"cached"}


def test_gc_counts_the_bytes_of_small_outputs_it_drops_with_their_records(project):
    project.run_json("base", "--set", "scale=2")  # small outputs: kept inside their key records, no object files
    _age_everything(project.root / "cache", 2 * 3600)
    project.run_json("base")

    def listing():
        rows = json.loads(project.experiment("cache", "ls", "--json").stdout)
        return {(r["key"], r["artifact"]): r["size"] for r in rows}

    before = listing()
    report = _gc(project, "--keep-last", "1")
    gone = {name: size for name, size in before.items() if name not in listing()}
    assert report["dropped_keys"] == 3 and report["dropped_objects"] == 0  # double_all, total, summary of scale=2
    assert report["freed_bytes"] == sum(gone.values()) > 0


def test_keep_last_keeps_results_newer_than_the_kept_runs_even_unrecorded_ones(project):
    project.run_json("base")
    _age_everything(project.root / "cache", 3 * 3600)
    os.chdir(project.root)
    from orchestrator import open_session

    # a notebook run without a record, after the last recorded run
    open_session("base", overrides={"scale": 4}).run(record=False)
    _age_everything(project.root / "cache", 2 * 3600, runs=False)  # past the grace period, still newer
    report = _gc(project, "--keep-last", "1")
    assert report["dropped_keys"] == 0
    project.ran()
    again = project.run_json("base", "--set", "scale=4")
    assert {n["status"] for n in again["nodes"]} == {"cached"} and project.ran() == []


def test_gc_with_limits_refuses_when_the_run_database_is_gone(project):
    project.run_json("base")
    _age_everything(project.root / "cache", 2 * 3600)
    (project.root / "cache" / "runs.db").rename(project.root / "cache" / "runs.db.damaged")
    proc = project.experiment("cache", "gc", "--keep-last", "5", check=2)
    assert "holds no runs" in proc.stderr and "remove every cached result" in proc.stderr and "Fix:" in proc.stderr
    assert len(list((project.root / "cache" / "keys").glob("*/*.json"))) == 5  # nothing was removed


def test_max_size_drops_the_oldest_results_until_the_rest_fits(project):
    project.run_json("base", "--set", "n=20000")  # the older, bigger results
    _age_everything(project.root / "cache", 3 * 3600)
    project.run_json("base")
    sizes = json.loads(project.experiment("cache", "ls", "--json").stdout)
    old = sum(a["size"] for a in sizes if a["age_seconds"] > 3600)
    assert old > 100_000  # lists of 20,000 numbers
    report = _gc(project, "--keep-last", "5", "--max-size", "20000")
    assert report["kept_bytes"] <= 20_000 and report["freed_bytes"] > 100_000
    assert report["dropped_keys"] >= 3  # the big lists; a tiny old record that fits may stay
    assert {n["status"] for n in project.run_json("base")["nodes"]} == {"cached"}  # the newest run is whole
    bigger = project.run_json("base", "--set", "n=20000")
    assert statuses(bigger)[("make_numbers", "base")] == "ran"


def test_gc_while_a_run_is_writing_leaves_the_run_intact(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/s.py": '''
            import time
            import numpy as np
            from orchestrator import stage

            @stage(outputs=["a"])
            def a(seed: int = 0):
                return np.random.default_rng(seed).random(200_000)

            @stage(inputs=["a"], outputs=["b"])
            def b(a):
                time.sleep(1.5)
                return a * 2

            @stage(inputs=["b"], outputs=["c"])
            def c(b):
                return float(b.sum())
        ''',
        "params/p.yaml": "params: {seed: 0}\n",
    })
    proj.run_json("p")  # an old run whose results are fair game
    _age_everything(proj.root / "cache", 40 * 86400)
    run = subprocess.Popen([*EXPERIMENT, "run", "p", "--set", "seed=1", "--json"], cwd=proj.root, env=proj.env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    collected = []
    while run.poll() is None:
        collected.append(_gc(proj, "--older-than", "30d"))
        time.sleep(0.2)
    out, err = run.communicate()
    assert run.returncode == 0, err
    assert sum(r["dropped_keys"] for r in collected) >= 3  # the old run's results went
    verify = json.loads(proj.experiment("cache", "verify", "--json").stdout)
    assert verify["problems"] == []
    again = proj.run_json("p", "--set", "seed=1")
    assert {n["status"] for n in again["nodes"]} == {"cached"}


def test_gc_removes_attempt_folders_of_old_failures_only(project):
    project.run_json("base")
    attempts = project.root / "cache" / "attempts" / "fit"
    old, fresh = attempts / "0123456789abcdef", attempts / "fedcba9876543210"
    for folder in (old, fresh):
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"epoch 3")
    _age_everything(project.root / "cache", 2 * 3600)
    past = time.time() - 3 * 3600  # before the kept run started
    for path in old.rglob("*"):
        os.utime(path, (past, past))
    (fresh / "checkpoints" / "last.ckpt").write_bytes(b"epoch 4")  # a training that failed just now
    report = _gc(project, "--keep-last", "5")
    assert report["dropped_attempts"] == 1
    assert not old.exists() and (fresh / "checkpoints" / "last.ckpt").exists()
