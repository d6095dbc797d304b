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
