"""Parallel execution and concurrent runs on one store: leases, retries, process pools."""

from __future__ import annotations

import json
import subprocess
import time

from conftest import EXPERIMENT, statuses

SLOW = '''
import os, time
from orchestrator import stage


def mark(name):
    with open(os.environ["RUNS_LOG"], "a") as handle:
        handle.write(f"{name} {time.time():.3f} start\\n")
    time.sleep(float(os.environ.get("STAGE_SECONDS", "0.5")))
    with open(os.environ["RUNS_LOG"], "a") as handle:
        handle.write(f"{name} {time.time():.3f} end\\n")


@stage(outputs=["shared"])
def shared(size: int = 3):
    mark("shared")
    return list(range(size))


@stage(inputs=["shared"], outputs=["left"])
def left(shared, k: int = 1):
    mark("left")
    return [x * k for x in shared]


@stage(inputs=["shared"], outputs=["right"])
def right(shared):
    mark("right")
    return [x + 1 for x in shared]
'''


def _project(make_project):
    return make_project({
        "stages/__init__.py": "",
        "stages/slow.py": SLOW,
        "params/a.yaml": "params: {k: 1}\n",
        "params/b.yaml": "params: {k: 2}\n",
    })


def _events(proj):
    events = [line.split() for line in proj.log.read_text().splitlines()] if proj.log.exists() else []
    if proj.log.exists():
        proj.log.unlink()
    return events


def test_process_pool_runs_independent_stages_at_once(make_project):
    proj = _project(make_project)
    summary = proj.run_json("a", "b", "--jobs", "2")
    assert summary["status"] == "succeeded"
    events = _events(proj)
    spans: dict[str, list[float]] = {}
    for name, stamp, kind in events:
        spans.setdefault(name, []).append(float(stamp))
    assert [e[0] for e in events].count("shared") == 2  # once: both sets have the same params for it
    # left and right (and left for the other set) overlap in time
    starts = sorted(float(s) for n, s, k in events if k == "start" and n != "shared")
    ends = sorted(float(s) for n, s, k in events if k == "end" and n != "shared")
    assert starts[1] < ends[0]


def test_process_pool_gives_the_same_artifacts_as_sequential(project):
    sequential = project.run_json("grid")
    parallel_cache = project.root / "parallel-cache"
    parallel = project.run_json("grid", "--jobs", "2", "--cache-dir", str(parallel_cache))
    assert {(n["stage"], n["param_set"]): n["outputs"] for n in sequential["nodes"]} == \
           {(n["stage"], n["param_set"]): n["outputs"] for n in parallel["nodes"]}


def test_concurrent_runs_compute_a_shared_stage_once(make_project):
    proj = _project(make_project)
    env = {**proj.env(), "STAGE_SECONDS": "1.0"}
    procs = [subprocess.Popen([*EXPERIMENT, "run", name, "--json"], cwd=proj.root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("a", "b", "a")]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1] for r in results]
    starts = [e[0] for e in _events(proj) if e[2] == "start"]
    assert starts.count("shared") == 1
    assert starts.count("right") == 1  # same key in both param files
    assert starts.count("left") == 2  # k differs: two keys
    summaries = [json.loads(r[0]) for r in results]
    assert {s["nodes"][0]["outputs"]["shared"] for s in summaries} == {summaries[0]["nodes"][0]["outputs"]["shared"]}


def test_lease_of_a_killed_run_is_taken_over(make_project):
    proj = _project(make_project)
    env = {**proj.env(), "STAGE_SECONDS": "30", "ORCHESTRATOR_LEASE_TTL": "2"}
    proj.kill_when_logged("shared", "run", "a", env=env)
    assert list((proj.root / "cache" / "leases").glob("*.json"))  # the dead run's lease is left behind
    _events(proj)
    started = time.time()
    proc = subprocess.run([*EXPERIMENT, "run", "a", "--json"], cwd=proj.root, capture_output=True, text=True,
                          env={**env, "STAGE_SECONDS": "0"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert statuses(json.loads(proc.stdout))[("shared", "a")] == "ran"
    assert time.time() - started < 30  # did not wait for the dead run
    assert not list((proj.root / "cache" / "leases").glob("*.json"))  # released at the end


def test_retries_rerun_a_flaky_stage(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/flaky.py": '''
            import os
            from orchestrator import stage

            @stage(outputs=["x"], retries=2)
            def flaky():
                path = os.environ["RUNS_LOG"] + ".count"
                count = int(open(path).read()) if os.path.exists(path) else 0
                open(path, "w").write(str(count + 1))
                if count < 2:
                    raise ConnectionError("transient")
                return count
        ''',
        "params/p.yaml": "params: {}\n",
    })
    summary = proj.run_json("p")
    assert summary["status"] == "succeeded"
    assert (proj.root / "runs.log.count").read_text() == "3"


def test_a_worker_that_dies_fails_its_stage_not_the_run(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/die.py": '''
            import os
            from orchestrator import stage

            @stage(outputs=["x"])
            def dies():
                os._exit(9)

            @stage(outputs=["y"])
            def fine():
                return 1
        ''',
        "params/p.yaml": "params: {}\n",
    })
    summary = proj.run_json("p", "--jobs", "2", "--keep-going", check=1)
    assert statuses(summary)[("dies", "p")] == "failed"
    error = next(n for n in summary["nodes"] if n["stage"] == "dies")["error"]
    assert error["kind"] == "worker"
    assert statuses(summary)[("fine", "p")] == "ran"  # even when it shared the pool that broke
