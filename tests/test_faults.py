"""Faults: a full disk, and kill -9 at random moments of a DAG with large artifacts and a map."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import pytest

from conftest import EXPERIMENT

FAULTY = '''
import errno
import os
import numpy as np
from orchestrator import Cacher, register_cacher, stage


class FullDisk(Cacher):
    name = "fulldisk"

    def save(self, obj, path):
        with open(path, "wb") as handle:
            handle.write(b"partial" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    def load(self, path):
        return None


register_cacher(FullDisk)


@stage(outputs=["big"])
def big(mb: int = 8):
    return np.random.default_rng(0).bytes(mb * 1024 * 1024)


@stage(outputs=["doomed"], cachers={"doomed": "fulldisk"})
def doomed():
    return b"x"
'''


def _no_partial_objects(cache):
    """Stored objects holding the partial bytes the failing save wrote, and staging leftovers."""
    objects = [p for p in (cache / "objects").glob("*/*") if p.is_file()] if (cache / "objects").exists() else []
    partial = [p for p in objects if p.read_bytes()[:7] == b"partial" or p.stat().st_size >= 1024 * 1024]
    staged = [p for p in (cache / "tmp").glob("*") if not p.name.startswith("scratch")] if (cache / "tmp").exists() else []
    return partial, staged


def test_injected_enospc_fails_the_stage_clearly_and_leaves_nothing_partial(make_project):
    proj = make_project({"stages/__init__.py": "", "stages/f.py": FAULTY, "params/p.yaml": "params: {}\n"})
    summary = proj.run_json("p", "--target", "doomed", check=1)
    error = summary["nodes"][0]["error"]["message"]
    assert "disk holding" in error and "is full" in error and "Nothing partial was kept" in error
    objects, staged = _no_partial_objects(proj.root / "cache")
    assert objects == [] and staged == []


def test_a_real_full_filesystem(make_project, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        proj = make_project({"stages/__init__.py": "", "stages/f.py": FAULTY, "params/p.yaml": "params: {}\n"})
        cache = small / "cache"
        summary = proj.run_json("p", "--target", "big", "--cache-dir", str(cache), check=1)
        error = summary["nodes"][0]["error"]["message"]
        assert "is full" in error and "Nothing partial was kept" in error
        objects, staged = _no_partial_objects(cache)
        assert objects == [] and staged == []
        ok = proj.run_json("p", "--target", "big", "--set", "mb=1", "--cache-dir", str(cache))
        assert ok["status"] == "succeeded"  # the store still works once the data fits
    finally:
        subprocess.run(["umount", str(small)], check=False)


KILLABLE = '''
import hashlib
import numpy as np
from orchestrator import stage


@stage(outputs=["matrix"])
def matrix(salt: int = 0, mb: int = 16):
    return np.random.default_rng(salt).standard_normal(mb * 1024 * 1024 // 8)


@stage(inputs=["matrix"], outputs=["chunks"])
def chunks(matrix):
    return [matrix[i::200].copy() for i in range(200)]


@stage(inputs=["chunks"], outputs=["digests"], map_over="chunks")
def digest(chunks):
    value = chunks
    for _ in range(30):
        value = np.sort(value)[::-1].copy()
    return hashlib.sha256(value.tobytes()).hexdigest()


@stage(inputs=["digests", "matrix"], outputs=["summary"])
def summarize(digests, matrix):
    return {"digests": sorted(digests), "mean": float(matrix.mean())}
'''


def _final_hashes(summary: dict) -> dict:
    return {n["stage"]: n["outputs"] for n in summary["nodes"] if n["status"] in ("ran", "cached")}


def kill_loop(proj, kills: int, seed: int) -> list[dict]:
    """Kill `experiment run` at random moments, resume, and compare with an uninterrupted run."""
    rng = random.Random(seed)
    findings = []
    for i in range(kills):
        salt = ["--set", f"salt={seed * 1000 + i}"]
        started = time.monotonic()
        reference = proj.run_json("p", *salt, "--workers", "2", "--cache-dir", str(proj.root / "reference-cache"))
        duration = time.monotonic() - started
        proc = subprocess.Popen([*EXPERIMENT, "run", "p", *salt, "--workers", "2"], cwd=proj.root, env=proj.env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        delay = rng.uniform(0.1, 0.9) * duration  # somewhere inside an uninterrupted run's span
        time.sleep(delay)
        killed = proc.poll() is None
        if killed:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        resumed = proj.run_json("p", *salt, "--workers", "2")
        assert resumed["status"] == "succeeded"
        assert _final_hashes(resumed) == _final_hashes(reference), f"kill {i} at {delay:.2f}s"
        verify = json.loads(proj.experiment("cache", "verify", "--json", check=None).stdout)
        assert verify["problems"] == [], verify["problems"]
        reused = sum(1 for n in resumed["nodes"] if n["status"] == "cached")
        findings.append({"delay": round(delay, 2), "killed": killed, "reused": reused})
    return findings


def test_kill_9_at_random_moments_then_resume(make_project):
    proj = make_project({"stages/__init__.py": "", "stages/k.py": KILLABLE, "params/p.yaml": "params: {}\n"})
    findings = kill_loop(proj, kills=4, seed=1)
    assert sum(f["killed"] for f in findings) >= 3


@pytest.mark.slow
def test_kill_9_loop_long(make_project):
    proj = make_project({"stages/__init__.py": "", "stages/k.py": KILLABLE, "params/p.yaml": "params: {}\n"})
    findings = kill_loop(proj, kills=50, seed=2)
    (proj.root.parent / "kill-loop.json").write_text(json.dumps(findings))
    assert sum(f["killed"] for f in findings) >= 40
