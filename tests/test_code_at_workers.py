"""The code that runs is the code hashed: a worker in another process checks what it imported.

A stage edited while the run waits (a queued SLURM job, a busy process pool) must never
store a result under a key computed for other code: the node fails and says why, or, with
``snapshot = true``, the job runs the code as it was when it was submitted.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from conftest import EXPERIMENT, statuses

FILES = {
    "stages/__init__.py": "",
    "stages/helpers.py": "OFFSET = 10\n",
    "stages/s.py": '''
        import os
        import time
        from pathlib import Path

        from orchestrator import stage


        @stage(outputs=["first"])
        def first():
            with open(os.environ["RUNS_LOG"], "a") as handle:
                handle.write("first\\n")
            go = Path(os.environ["GO_FILE"])
            deadline = time.time() + 60
            while not go.exists() and time.time() < deadline:
                time.sleep(0.05)
            return 1
    ''',
    # a module no worker has imported before `second` runs in it (workers import what a task names)
    "stages/t.py": '''
        from orchestrator import stage

        from . import helpers


        @stage(inputs=["first"], outputs=["second"])
        def second(first):
            return first + helpers.OFFSET
    ''',
    "params/p.yaml": "params: {}\n",
}


def _run_while_editing(proj, *args: str) -> subprocess.CompletedProcess[str]:
    """Start `run p ARGS`; once `first` runs, edit the helper `second` reads; let `first` finish."""
    env = proj.env()
    env["GO_FILE"] = str(proj.root / "go")
    child = subprocess.Popen([*EXPERIMENT, "run", "p", "--json", *args], cwd=proj.root, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proj.wait_logged("first")
    time.sleep(0.5)
    # (a new size: a same-size edit in the second its .pyc was written would import the old bytecode,
    # which then matches its key, correctly; this test wants the worker to import the new code)
    proj.edit("stages/helpers.py", "OFFSET = 10", "OFFSET = 200")
    (proj.root / "go").write_text("")
    out, err = child.communicate(timeout=240)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def test_a_pool_worker_that_imported_edited_code_fails_the_node_instead_of_storing_it(make_project):
    proj = make_project(FILES)
    proc = _run_while_editing(proj, "-j", "2")
    assert proc.returncode == 1, proc.stderr
    assert "changed after the run planned it" in proc.stdout + proc.stderr
    again = proj.run_json("p")  # the edit is seen now; `first` stays cached
    assert statuses(again) == {("first", "p"): "cached", ("second", "p"): "ran"}
    import orchestrator

    assert orchestrator.load("second", params="p", project_dir=proj.root) == 201


def test_a_queued_slurm_job_with_a_snapshot_runs_the_code_it_was_keyed_for(make_project):
    pytest.importorskip("submitit")
    proj = make_project({**FILES, "pyproject.toml": '[tool.orchestrator.executor.slurm]\ncluster = "local"\n'
                                                    'time = 5\nfolder = "cache/submitit"\nsnapshot = true\n'})
    proc = _run_while_editing(proj, "--executor", "slurm")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list((proj.root / "cache" / "submitit" / "snapshots").iterdir())
    plan = proj.experiment("plan", "p").stdout
    assert "code changed: OFFSET" in " ".join(plan.split())  # the stored result is the old code's
    again = proj.run_json("p")
    assert statuses(again)[("second", "p")] == "ran"
