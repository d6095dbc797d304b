"""Every executor runs the same sweep with the same artifact hashes as the sequential run."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import EXPERIMENT


def _outputs(summary: dict) -> dict:
    return {(n["stage"], n["param_set"]): n["outputs"] for n in summary["nodes"]}


def _engine_run(project, executor: str, *extra: str) -> dict:
    cache = project.root / f"cache-{executor}"
    return project.run_json("grid", "--executor", executor, "--cache-dir", str(cache), *extra)


def test_dask_local_cluster_matches_sequential(project):
    pytest.importorskip("distributed")
    sequential = project.run_json("grid")
    summary = _engine_run(project, "dask", "--jobs", "2")
    assert summary["status"] == "succeeded"
    assert _outputs(summary) == _outputs(sequential)


def test_slurm_through_submitit_local_executor_matches_sequential(project):
    pytest.importorskip("submitit")
    project.write({"pyproject.toml": '[tool.orchestrator.executor.slurm]\ncluster = "local"\ntime = 5\n'
                                     'folder = "cache/submitit"\n'})
    sequential = project.run_json("grid")
    summary = _engine_run(project, "slurm")
    assert summary["status"] == "succeeded"
    assert _outputs(summary) == _outputs(sequential)
    assert list((project.root / "cache" / "submitit").glob("*_log.out"))  # real submitit jobs ran


def test_slurm_job_parameters_do_not_leak_from_one_stage_to_the_next(tmp_path):
    pytest.importorskip("submitit")
    from orchestrator.executors.slurm import SlurmExecutor

    executor = SlurmExecutor(cluster="local", folder=str(tmp_path))
    gpu_job = executor._executor({"timeout_min": 60, "cpus_per_task": 4, "gpus_per_node": 2, "mem_gb": 64,
                                  "name": "train"})
    plain_job = executor._executor({"timeout_min": 60, "cpus_per_task": 1, "name": "report"})
    assert gpu_job._executor.parameters["gpus_per_node"] == 2
    assert "gpus_per_node" not in plain_job._executor.parameters  # submitit merges: one executor would keep 2
    assert "mem_gb" not in plain_job._executor.parameters
    executor.close()


def _unshare_available() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _unshare_available(), reason="needs `unshare -n` (root) for a loopback-only namespace")
def test_ray_in_a_loopback_only_namespace_matches_sequential(project):
    pytest.importorskip("ray")
    sequential = project.run_json("grid")
    cache = project.root / "cache-ray"
    command = " ".join([*EXPERIMENT, "run", "grid", "--executor", "ray", "--jobs", "2", "--cache-dir", str(cache),
                        "--json"])
    proc = subprocess.run(["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {command}"],
                          cwd=project.root, env={**project.env(), "RAY_USAGE_STATS_ENABLED": "0"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert _outputs(summary) == _outputs(sequential)


DASK_MAP = '''
import os
from orchestrator import stage


def _where():
    try:
        from distributed import get_worker

        get_worker()
        return "dask"
    except (ImportError, ValueError):
        return "elsewhere"


@stage(outputs=["numbers"])
def numbers(n: int = 40):
    return list(range(n))


@stage(outputs=["rule"])
def rule():
    return lambda x: x * x   # cloudpickled; plain pickle cannot send it to a worker


@stage(inputs=["numbers", "rule"], outputs=["placed"], map_over="numbers")
def place(numbers, rule, ctx):
    return (rule(numbers), _where(), os.getpid(), ctx.worker)


@place.setup
def start(ctx):
    with open(os.environ["RUNS_LOG"], "a") as handle:
        handle.write(f"setup {os.getpid()}\\n")
    return os.getpid()
'''


def test_dask_runs_map_chunks_as_tasks_of_the_cluster(make_project):
    pytest.importorskip("distributed")
    proj = make_project({"stages/__init__.py": "", "stages/m.py": DASK_MAP, "params/p.yaml": "params: {}\n"})
    summary = proj.run_json("p", "--executor", "dask", "--jobs", "2", "--set", "n=40")
    assert summary["status"] == "succeeded"
    from orchestrator import load

    placed = load("placed", params="p", overrides={"n": 40}, project_dir=proj.root)
    assert [square for square, _, _, _ in placed] == [x * x for x in range(40)]
    assert {where for _, where, _, _ in placed} == {"dask"}  # in the cluster's workers, not a pool inside one
    setups = [line.split()[1] for line in proj.log.read_text().split("\n") if line.startswith("setup")]
    assert len(setups) == len(set(setups))  # the setup ran once per worker process
    assert {str(pid) for _, _, pid, _ in placed} <= set(setups)
    assert all(pid == worker for _, _, pid, worker in placed)  # ctx.worker is that process's setup value
    # a process pool sends inputs with plain pickle: the lambda is a clear error there, before any item runs
    failed = proj.run_json("p", "--workers", "2", "--set", "n=40", "--cache-dir", str(proj.root / "other"), check=1)
    error = next(n for n in failed["nodes"] if n["stage"] == "place")["error"]["message"]
    assert "its input 'rule' (function) cannot be sent to worker processes" in error
