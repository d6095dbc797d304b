"""The notebook API: orchestrator.run / plan / load in one long-lived Python process."""

from __future__ import annotations

import pytest

import orchestrator
from orchestrator.engine.driver import Status


def test_run_then_load_from_python(project):
    result = orchestrator.run("base", project_dir=project.root)
    assert result.ok and result.outcome("total").status is Status.RAN
    assert orchestrator.load("total", params="base", project_dir=project.root) == 2 * sum(range(5)) + sum(
        x + 10 for x in range(5))
    again = orchestrator.run("base", project_dir=project.root)
    assert {o.status for o in again.outcomes} == {Status.CACHED}
    planned = orchestrator.plan("base", overrides={"scale": 3}, project_dir=project.root)
    assert "param scale 1 -> 3" in planned.decisions["double_all@base"].reasons


def test_a_rerun_after_editing_a_helper_runs_the_edited_code(project):
    first = orchestrator.run("base", project_dir=project.root)
    assert first.load("doubled") == [0, 2, 4, 6, 8]
    project.edit("stages/helpers.py", "return 2 * x", "return 3 * x")  # same size, same second
    edited = orchestrator.run("base", project_dir=project.root)
    assert edited.outcome("double_all").status is Status.RAN
    assert edited.load("doubled") == [0, 3, 6, 9, 12]  # not the old code under the new key
    assert orchestrator.load("doubled", params="base", project_dir=project.root) == [0, 3, 6, 9, 12]
    fresh = project.run_json("base")  # a new process agrees with what the notebook stored
    assert {n["stage"]: n["status"] for n in fresh["nodes"]}["double_all"] == "cached"


def test_load_of_a_corrupt_final_artifact_drops_it_and_says_what_to_run(project):
    result = orchestrator.run("base", project_dir=project.root)
    assert result.status == "succeeded"
    project.damage("summary", "summary", lambda data: data[:-1] + b"!")
    with pytest.raises(orchestrator.ArtifactNotCached, match="corrupt or missing.*Fix: experiment run base"):
        orchestrator.load("summary", params="base", project_dir=project.root)
    rerun = project.run_json("base")
    assert {n["stage"]: n["status"] for n in rerun["nodes"]}["summary"] == "ran"
    assert orchestrator.load("summary", params="base", project_dir=project.root) == {"base": 80}


def test_a_rerun_after_an_edit_in_a_project_that_holds_the_library_itself(tmp_path):
    """The example project lives beside `orchestrator/`: re-importing edited modules must leave the library alone."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    copy = tmp_path / "repo"
    for name in ("orchestrator", "stages", "params", "external"):
        shutil.copytree(repo / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    script = (
        "import pathlib, orchestrator\n"
        "assert pathlib.Path(orchestrator.__file__).is_relative_to(pathlib.Path.cwd())\n"
        "first = orchestrator.plan('baseline')\n"
        "helpers = pathlib.Path('stages/helpers.py')\n"
        "helpers.write_text(helpers.read_text() + '\\n\\ndef added_later():\\n    return 1\\n')\n"
        "second = orchestrator.plan('baseline')\n"
        "assert list(first.decisions) == list(second.decisions)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(copy)}
    env.pop("ORCHESTRATOR_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", script], cwd=copy, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
