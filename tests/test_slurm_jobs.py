"""SLURM at sweep scale, through submitit's local executor: job arrays, --detach, status and re-attaching."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

pytest.importorskip("submitit")

STAGES = '''
import os, time
from orchestrator import stage

def log(line):
    with open(os.environ["RUNS_LOG"], "a") as f:
        f.write(line + "\\n")

@stage(outputs=["model"])
def train(lr: float):
    log(f"train start {lr}")
    time.sleep(float(os.environ.get("TRAIN_SLEEP", "0")))
    log(f"train end {lr}")
    return lr * 2

@stage(inputs=["model"], outputs=["score"])
def evaluate(model):
    log(f"evaluate {model}")
    return model + 1
'''

CONFIG = '[tool.orchestrator.executor.slurm]\ncluster = "local"\ntime = 5\nfolder = "cache/submitit"\npoll = 0.1\n'


@pytest.fixture
def sweep(make_project):
    return make_project({"stages/__init__.py": "", "stages/s.py": STAGES, "pyproject.toml": CONFIG,
                         "params/grid.yaml": "grid:\n  lr: [1, 2, 3, 4]\n"})


def _log(proj, prefix: str) -> list[str]:
    return [line for line in proj.log.read_text().splitlines() if line.startswith(prefix)] if proj.log.exists() else []


def test_detach_submits_and_exits_status_follows_and_a_later_run_reattaches(sweep, monkeypatch):
    monkeypatch.setenv("TRAIN_SLEEP", "3")
    started = time.monotonic()
    detached = json.loads(sweep.experiment("run", "grid", "--executor", "slurm", "--detach", "--json").stdout)
    assert time.monotonic() - started < 20  # it did not wait for the 3 s jobs... beyond starting them
    assert detached["status"] == "detached"
    nodes = {(n["stage"], n["param_set"]): n["status"] for n in detached["nodes"]}
    assert {s for (stage, _), s in nodes.items() if stage == "train"} == {"detached"}
    assert {s for (stage, _), s in nodes.items() if stage == "evaluate"} == {"skipped"}
    jobs = json.loads(sweep.experiment("status", detached["run_id"], "--json").stdout)["jobs"]
    assert len(jobs) == 4 and {j["stage"] for j in jobs} == {"train"}
    assert {j["state"] for j in jobs} <= {"running", "completed", "pending"}
    # running again re-attaches to the jobs (keyed by their cache keys) instead of submitting them again
    attached = sweep.experiment("attach", detached["run_id"], timeout=120)  # (RUN's own command, without --detach)
    assert "attaching to run" in attached.stderr and "succeeded" in attached.stderr + attached.stdout
    assert len(_log(sweep, "train start")) == 4  # each training ran once
    assert len(_log(sweep, "evaluate")) == 4
    text = sweep.experiment("status", detached["run_id"]).stdout
    assert "4 jobs (4 completed)" in text


def test_a_job_that_died_is_submitted_again(sweep, monkeypatch):
    monkeypatch.setenv("TRAIN_SLEEP", "30")
    detached = json.loads(sweep.experiment("run", "grid", "--executor", "slurm", "--detach", "--json").stdout)
    jobs = json.loads(sweep.experiment("status", detached["run_id"], "--json").stdout)["jobs"]
    deadline = time.time() + 30
    while time.time() < deadline and len(_log(sweep, "train start")) < 4:
        time.sleep(0.1)
    os.kill(int(jobs[0]["job"]), 9)  # a local job's id is its process
    monkeypatch.setenv("TRAIN_SLEEP", "0")
    for job in jobs[1:]:
        os.kill(int(job["job"]), 9)
    summary = json.loads(sweep.experiment("run", "grid", "--executor", "slurm", "--json", timeout=120).stdout)
    assert summary["status"] == "succeeded"
    assert len(_log(sweep, "train end")) == 4


def test_a_wave_of_one_stage_goes_out_as_one_job_array(sweep, tmp_path, monkeypatch):
    """With SLURM's own sbatch (a stub here that records what it is given), 4 trainings are one array."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch-calls"
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f'#!/bin/sh\necho "$@" >> {calls}\ncat "$1" >> {calls}\necho "Submitted batch job 4242"\n')
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    for tool in ("srun", "sacct", "squeue", "scancel"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    sweep.write({"pyproject.toml": CONFIG.replace('cluster = "local"', 'cluster = "slurm"')})
    detached = json.loads(sweep.experiment("run", "grid", "--executor", "slurm", "--detach", "--json").stdout)
    assert detached["status"] == "detached"
    text = calls.read_text()
    assert text.count("Submitted") == 0 and text.count("#SBATCH --array=0-3") == 1  # one sbatch, an array of 4
    jobs = json.loads(sweep.experiment("status", detached["run_id"], "--json").stdout)["jobs"]
    assert sorted(j["job"] for j in jobs) == ["4242_0", "4242_1", "4242_2", "4242_3"]


def test_detach_needs_a_cluster_executor(sweep):
    proc = sweep.experiment("run", "grid", "--detach", "-j", "2", check=2)
    assert "--detach needs" in proc.stderr and "Fix:" in proc.stderr
