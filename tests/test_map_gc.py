"""A map that resumes beside `cache gc`: what a live run holds or reads is kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from conftest import EXPERIMENT

STAGES = '''
import os, time
from pathlib import Path
from orchestrator import stage


@stage(outputs=["numbers"])
def numbers(count: int = 40):
    return list(range(count))


@stage(inputs=["numbers"], outputs=["squares"], map_over="numbers")
def square(numbers):
    with open(os.environ["RUNS_LOG"], "a") as handle:
        handle.write(f"item {numbers}\\n")
    if numbers >= 20:  # the second half waits until the test says go
        go = Path(os.environ["RUNS_LOG"] + ".go")
        deadline = time.time() + 60
        while not go.exists() and time.time() < deadline:
            time.sleep(0.02)
    return numbers * numbers
'''


def _start(proj):
    return subprocess.Popen([*EXPERIMENT, "run", "p", "--workers", "2"], cwd=proj.root, env=proj.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _wait_for(proj, predicate, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proj.log.exists() and predicate(proj.log.read_text()):
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out; log: {proj.log.read_text() if proj.log.exists() else ''}")


def _segment_files(proj):
    return sorted((proj.root / "cache" / "maps").glob("*/*/*.json"))


def test_gc_keeps_the_segments_of_a_map_a_live_run_is_resuming(make_project):
    proj = make_project({"stages/__init__.py": "", "stages/s.py": STAGES, "params/p.yaml": "params: {count: 40}\n"})
    first = _start(proj)
    _wait_for(proj, lambda text: text.count("item ") >= 22)
    time.sleep(1.0)  # the first half's chunks are stored
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    segments = _segment_files(proj)
    assert segments
    stored = sum(len(json.loads(p.read_text())["items"]) for p in segments)
    for path in segments:  # written two days ago: older than anything gc keeps by age
        data = json.loads(path.read_text())
        data["created"] = time.time() - 2 * 86400
        os.chmod(path, 0o644)
        path.write_text(json.dumps(data))
    proj.log.unlink()
    second = _start(proj)
    try:
        _wait_for(proj, lambda text: "item 2" in text and any(
            int(line.split()[1]) >= 20 for line in text.split("\n") if line.startswith("item ")))
        gc = proj.experiment("cache", "gc", "--keep-last", "1", "--json")
        assert json.loads(gc.stdout)["dropped_segments"] == 0, gc.stdout  # the resuming run holds them
        assert all(p.exists() for p in segments)
    finally:
        (proj.root / "runs.log.go").write_text("")
        assert second.wait(timeout=120) == 0
    recomputed = [line for line in proj.log.read_text().splitlines() if line.startswith("item ")]
    assert len(recomputed) == 40 - stored  # nothing the first run finished was computed again


SHARED = '''
import os
from orchestrator import stage


@stage(outputs=["numbers"])
def numbers(start: int = 0):
    return list(range(start, start + 30))


@stage(inputs=["numbers"], outputs=["squares"], map_over="numbers")
def square(numbers):
    with open(os.environ["RUNS_LOG"], "a") as handle:
        handle.write(f"item {numbers}\\n")
    return numbers * numbers
'''


def test_two_map_nodes_with_one_map_key_at_once_compute_a_shared_item_once(make_project):
    """Two sets that differ only in the mapped input share a map key: under -j 2 they take turns on it."""
    proj = make_project({"stages/__init__.py": "", "stages/s.py": SHARED,
                         "params/p.yaml": "sets:\n  - {name: a, start: 0}\n  - {name: b, start: 10}\n"})
    summary = proj.run_json("p", "-j", "2", "--workers", "2")
    assert summary["status"] == "succeeded"
    items = [int(line.split()[1]) for line in proj.log.read_text().splitlines() if line.startswith("item ")]
    assert sorted(items) == list(range(40))  # 0..39 once each: the 20 items both sets hold computed once
