"""Faults: a full disk, and kill -9 at random moments of a DAG with large artifacts, a map and torchrun."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

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
from pathlib import Path

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


@stage(inputs=["summary"], outputs=["model"])
def train(summary: Path, epochs: int = 3, ctx=None):
    return ctx.torchrun("external/train.py", args={"summary": summary, "epochs": epochs},
                        outputs={"model": "model.json"}, nproc_per_node=2, timeout=120)
'''

TRAIN = '''
"""A toy DDP training over the summary: an all_reduce and a checkpoint per epoch, resumable."""
import json
import time
from pathlib import Path

import torch
import torch.distributed as dist

from orchestrator.external import atomic_path, checkpoint_dir, entrypoint, parse_args, resume_checkpoint, write_json


@entrypoint
def main():
    args = parse_args(summary=Path, epochs=3)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    summary = json.loads(args.summary.read_text())
    start, total = 0, 0.0
    checkpoint = resume_checkpoint(args)
    if checkpoint is not None:
        state = json.loads(checkpoint.read_text())
        start, total = state["epoch"] + 1, state["total"]
    for epoch in range(start, args.epochs):
        value = torch.tensor([summary["mean"] + epoch + rank], dtype=torch.float64)
        dist.all_reduce(value)
        total += value.item()
        time.sleep(0.2)
        with atomic_path(checkpoint_dir(args) / "last.ckpt") as staged:
            if rank == 0:
                staged.write_text(json.dumps({"epoch": epoch, "total": total}))
        dist.barrier()
    write_json(args.output_dir / "model.json", {"total": round(total, 9), "digests": len(summary["digests"])})
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
'''

KILL_FILES = {"stages/__init__.py": "", "stages/k.py": KILLABLE, "external/train.py": TRAIN,
              "params/p.yaml": "params: {}\n"}


def _final_hashes(summary: dict) -> dict:
    return {n["stage"]: n["outputs"] for n in summary["nodes"] if n["status"] in ("ran", "cached")}


def _tagged(tag: str) -> list[int]:
    """Pids of live processes whose environment carries ``tag`` (the run and every torchrun rank)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag.encode() in (entry / "environ").read_bytes():
                    stat = (entry / "stat").read_text()
                    if stat.rsplit(")", 1)[1].split()[0] != "Z":
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def _run_ids(proj) -> dict[str, str]:
    """Run id -> status, from the run store."""
    return {run["id"]: run["status"] for run in _runs(proj)}


def _runs(proj) -> list[dict]:
    return json.loads(proj.experiment("runs", "--json").stdout)


def kill_loop(proj, kills: int, seed: int) -> list[dict]:
    """Kill `experiment run` at random moments, resume, and compare with an uninterrupted run."""
    rng = random.Random(seed)
    findings = []
    for i in range(kills):
        salt = ["--set", f"salt={seed * 1000 + i}"]
        started = time.monotonic()
        reference = proj.run_json("p", *salt, "--workers", "2", "--cache-dir", str(proj.root / "reference-cache"))
        duration = time.monotonic() - started
        before = _run_ids(proj) if i else {}
        tag = f"KILL_LOOP_TAG={uuid.uuid4().hex}"
        env = {**proj.env(), "KILL_LOOP_TAG": tag}
        proc = subprocess.Popen([*EXPERIMENT, "run", "p", *salt, "--workers", "2"], cwd=proj.root, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        delay = rng.uniform(0.1, 0.9) * duration  # somewhere inside an uninterrupted run's span
        time.sleep(delay)
        killed = proc.poll() is None
        killed_at = time.time()
        if killed:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 30
        while _tagged(tag) and time.monotonic() < deadline:  # torchrun ranks die with the run
            time.sleep(0.1)
        assert _tagged(tag) == [], f"kill {i} at {delay:.2f}s left processes behind"
        new = {run["id"]: run for run in _runs(proj) if run["id"] not in before}
        if killed and new:  # (a kill before the run was recorded leaves no record)
            [run] = new.values()
            # a run whose record was closed before the kill landed (on its way out) did succeed
            finished_first = run["status"] == "succeeded" and run["ended"] is not None and run["ended"] <= killed_at
            assert run["status"] == "interrupted" or finished_first, f"kill {i} at {delay:.2f}s: {run}"
        stored = {path.stem for path in (proj.root / "cache" / "keys").glob("*/*.json")}
        resumed = proj.run_json("p", *salt, "--workers", "2")
        assert resumed["status"] == "succeeded"
        redone = [n["stage"] for n in resumed["nodes"] if n["key"] in stored and n["status"] != "cached"]
        assert redone == [], f"kill {i} at {delay:.2f}s: finished stages computed again: {redone}"
        assert _final_hashes(resumed) == _final_hashes(reference), f"kill {i} at {delay:.2f}s"
        verify = json.loads(proj.experiment("cache", "verify", "--json", check=None).stdout)
        assert verify["problems"] == [], verify["problems"]
        reused = sum(1 for n in resumed["nodes"] if n["status"] == "cached")
        findings.append({"delay": round(delay, 2), "killed": killed, "reused": reused})
    return findings


def test_kill_9_at_random_moments_then_resume(make_project):
    proj = make_project(KILL_FILES)
    findings = kill_loop(proj, kills=4, seed=1)
    assert sum(f["killed"] for f in findings) >= 3


@pytest.mark.slow
def test_kill_9_loop_long(make_project):
    proj = make_project(KILL_FILES)
    findings = kill_loop(proj, kills=50, seed=2)
    (proj.root.parent / "kill-loop.json").write_text(json.dumps(findings))
    assert sum(f["killed"] for f in findings) >= 40


def test_a_full_disk_under_the_run_database_is_said_to_be_full_never_damaged(make_project, tmp_path):
    small = tmp_path / "tiny"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        proj = make_project({"stages/__init__.py": "", "stages/f.py": FAULTY, "params/p.yaml": "params: {}\n"})
        cache = small / "cache"
        proj.run_json("p", "--target", "big", "--set", "mb=0", "--cache-dir", str(cache))
        filler = small / "filler"
        with open(filler, "wb", buffering=0) as handle:  # leave no room at all (unbuffered: closing flushes nothing)
            try:
                while True:
                    handle.write(b"\0" * 65536)
            except OSError:
                pass
        proc = proj.experiment("run", "p", "--target", "big", "--set", "mb=1",
                               "--cache-dir", str(cache), check=None)
        text = proc.stdout + proc.stderr
        assert proc.returncode != 0 and "full" in text, text
        assert "damaged" not in text and ".damaged" not in text and "Traceback" not in text, text
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_a_store_deleted_while_a_run_is_going_is_reported_as_such(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/s.py": "import shutil\nfrom orchestrator import stage\n\n\n@stage(outputs=['a'])\ndef a(ctx):\n"
                       "    shutil.rmtree(ctx.project_root / 'cache')\n    return list(range(5000))\n",
        "params/p.yaml": "params: {}\n",
    })
    proc = proj.experiment("run", "p", check=1)
    text = proc.stdout + proc.stderr
    assert "the store at" in text and "disappeared while the run was going" in text, text
    assert "disk is full" not in text and "Traceback" not in proc.stderr and "cachers=" not in text
