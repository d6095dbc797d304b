"""The example project's sweep on every executor gives the sequential run's artifact hashes (slow)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = [sys.executable, "-m", "orchestrator"]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    copy = tmp_path_factory.mktemp("example")
    for name in ("stages", "params", "external"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    sequential = _run(copy, "local")
    return copy, sequential


def _run(project: Path, executor: str, *extra: str, prefix: tuple[str, ...] = ()) -> dict:
    command = [*prefix, *EXPERIMENT, "run", "sweep", "--executor", executor, "--cache-dir",
               str(project / f"cache-{executor}"), "--json", *extra]
    proc = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def _hashes(summary: dict) -> dict:
    # seeded gloo DDP training on CPU is bit-reproducible: checkpoints and metrics included
    return {(n["stage"], n["param_set"]): n["outputs"] for n in summary["nodes"]}


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["process", "dask", "slurm"])
def test_example_sweep_on_executor(example, executor):
    project, sequential = example
    if executor == "slurm":
        (project / "pyproject.toml").write_text('[tool.orchestrator.executor.slurm]\ncluster = "local"\ntime = 30\n'
                                               'folder = "cache-slurm/submitit"\n')
    summary = _run(project, executor, "--jobs", "2")
    assert {n["status"] for n in summary["nodes"]} <= {"ran", "cached"}
    assert _hashes(summary) == _hashes(sequential)
    assert len([n for n in summary["nodes"] if n["stage"] == "fit"]) == 6


def _unshare_available() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _unshare_available(), reason="needs `unshare -n` (root) for a loopback-only namespace")
def test_example_sweep_on_ray(example):
    pytest.importorskip("ray")
    project, sequential = example
    command = shlex.join([*EXPERIMENT, "run", "sweep", "--executor", "ray", "--jobs", "2", "--cache-dir",
                          str(project / "cache-ray"), "--json"])
    proc = subprocess.run(["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {command}"], cwd=project,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert {n["status"] for n in summary["nodes"]} <= {"ran", "cached"}
    assert _hashes(summary) == _hashes(sequential)
    assert len([n for n in summary["nodes"] if n["stage"] == "fit"]) == 6
