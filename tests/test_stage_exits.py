"""A stage that exits or prints: a failure like any other, and a --json stdout that stays JSON."""

from __future__ import annotations

import json

import pytest
from conftest import statuses

FILES = {
    "stages/__init__.py": "",
    "stages/s.py": '''
        import sys

        from orchestrator import stage


        @stage(outputs=["three"])
        def exits_three():
            print("about to exit")
            sys.exit(3)


        @stage(outputs=["zero"])
        def exits_zero():
            sys.exit(0)


        @stage(outputs=["fine"])
        def fine():
            print("a stage that talks on stdout")
            return 1


        @stage(inputs=["fine"], outputs=["after"])
        def after(fine):
            return fine + 1
    ''',
    "params/p.yaml": "params: {}\n",
}


@pytest.mark.parametrize("jobs", [[], ["-j", "2"], ["--executor", "dask", "-j", "2"]],
                         ids=["local", "process-pool", "dask"])
def test_a_stage_that_calls_sys_exit_fails_and_the_run_goes_on(make_project, jobs):
    if "dask" in jobs:
        pytest.importorskip("distributed")
    proj = make_project(FILES)
    proc = proj.experiment("run", "p", "--keep-going", "--json", *jobs, check=1)
    summary = json.loads(proc.stdout)  # stdout is the JSON document, whatever the stages printed
    assert statuses(summary) == {("exits_three", "p"): "failed", ("exits_zero", "p"): "failed",
                                 ("fine", "p"): "ran", ("after", "p"): "ran"}
    errors = {n["stage"]: n["error"]["message"] for n in summary["nodes"] if n["status"] == "failed"}
    assert errors["exits_three"].startswith("SystemExit(3)")
    assert errors["exits_zero"].startswith("SystemExit(0)")
    assert "about to exit" in proc.stderr and "a stage that talks on stdout" in proc.stderr
    plain = proj.experiment("run", "p", "--keep-going", check=1)
    assert "SystemExit(3)" in plain.stdout + plain.stderr


def test_map_items_that_exit_are_item_failures(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/s.py": '''
            import sys

            from orchestrator import stage


            @stage(outputs=["items"])
            def items():
                return list(range(6))


            @stage(inputs=["items"], outputs=["doubled"], map_over="items")
            def double(items):
                if items == 3:
                    sys.exit(2)
                return 2 * items
        ''',
        "params/p.yaml": "params: {}\n",
    })
    proc = proj.experiment("run", "p", "--workers", "2", "--json", check=1)
    summary = json.loads(proc.stdout)
    failed = [n for n in summary["nodes"] if n["status"] == "failed"]
    assert [n["stage"] for n in failed] == ["double"] and "SystemExit" in failed[0]["error"]["message"]
