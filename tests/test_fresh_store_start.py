"""Many runs starting at once on a fresh store all start (creating the run database is retried)."""

from __future__ import annotations

import subprocess

from conftest import EXPERIMENT, FILES, write_files


def test_six_runs_started_at_once_on_a_fresh_store_all_succeed(tmp_path):
    import os

    for attempt in range(3):
        root = tmp_path / f"p{attempt}"
        write_files(root, FILES)
        env = {**os.environ, "RUNS_LOG": str(root / "runs.log")}
        env.pop("ORCHESTRATOR_CACHE_DIR", None)
        children = [subprocess.Popen([*EXPERIMENT, "run", "base"], cwd=root, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True) for _ in range(6)]
        results = [(c.returncode, c.communicate(timeout=180)[1]) for c in children]
        results = [(c.returncode, err) for c, (_, err) in zip(children, results)]
        failed = [err for code, err in results if code != 0]
        assert not failed, failed[0]
