"""Which edits invalidate which stages: helper, constant, comment, docstring, unrelated code."""

from __future__ import annotations

import json

import pytest
from conftest import statuses

ALL = ["double_all", "make_numbers", "shift", "summary", "total"]


@pytest.fixture
def warm(project):
    project.run_json("base")
    assert sorted(project.ran()) == ALL
    return project


def test_helper_edit_invalidates_exactly_its_callers(warm):
    warm.edit("stages/helpers.py", "return 2 * x", "return 3 * x")
    plan = warm.experiment("plan", "base").stdout
    assert "code changed: double" in plan
    warm.run_json("base")
    assert sorted(warm.ran()) == ["double_all", "summary", "total"]


def test_module_constant_edit_invalidates_its_readers(warm):
    warm.edit("stages/helpers.py", "OFFSET = 10", "OFFSET = 11")
    warm.run_json("base")
    assert sorted(warm.ran()) == ["shift", "summary", "total"]


def test_comment_docstring_and_formatting_edits_invalidate_nothing(warm):
    warm.edit("stages/pipeline.py", "# shift every number by the offset", "# a different comment")
    warm.edit("stages/helpers.py", '"""Twice x."""', '"""Return x doubled (reworded)."""')
    warm.edit("stages/helpers.py", "return 2 * x", "return 2*x  # tight")
    summary = warm.run_json("base")
    assert warm.ran() == []
    assert set(statuses(summary).values()) == {"cached"}


def test_unrelated_function_in_same_file_invalidates_nothing(warm):
    warm.edit("stages/helpers.py", "return 0", "return 42")
    warm.run_json("base")
    assert warm.ran() == []


def test_stage_body_edit_invalidates_that_stage(warm):
    warm.edit("stages/pipeline.py", "return [x + OFFSET for x in numbers]", "return [OFFSET + x for x in numbers]")
    plan = warm.experiment("plan", "base").stdout
    assert "code changed: shift" in plan
    warm.run_json("base")
    assert warm.ran() == ["shift"]  # same content: total stays cached (early cutoff)


def test_version_bump_invalidates(warm):
    warm.edit("stages/pipeline.py", '@stage(outputs=["numbers"])', '@stage(outputs=["numbers"], version=2)')
    plan = warm.experiment("plan", "base").stdout
    assert "version bumped" in plan or "code changed: make_numbers" in plan
    warm.run_json("base")
    assert "make_numbers" in warm.ran()


def test_plan_names_the_changed_param(warm):
    plan = warm.experiment("plan", "base", "--set", "scale=4").stdout
    assert "param scale 1 -> 4" in plan
    assert "MAY RUN" in plan  # total sits below a stale stage


def test_ctx_params_and_seed_enter_the_key_when_read(make_project, tmp_path):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/s.py": '''
            from orchestrator import stage

            @stage(outputs=["everything"])
            def reads_all(ctx):
                return dict(ctx.params)

            @stage(outputs=["seeded"])
            def seeded(ctx):
                return ctx.seed
        ''',
        "params/p.yaml": "params: {a: 1, seed: 3}\n",
    })
    proj.run_json("p")
    again = proj.run_json("p", "--set", "a=2")
    assert statuses(again)[("reads_all", "p")] == "ran"
    assert statuses(again)[("seeded", "p")] == "cached"
    reseeded = proj.run_json("p", "--set", "a=2", "--set", "seed=4")
    assert statuses(reseeded)[("seeded", "p")] == "ran"


def test_cached_helpers_and_namespace_package_modules_are_followed(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/s.py": '''
            import functools

            import ns.tools
            from orchestrator import stage

            from .memo import slow_double


            @functools.lru_cache(maxsize=None)
            def base():
                return 1


            @stage(outputs=["a"])
            def uses_lru():
                return base() + slow_double(1)


            @stage(outputs=["b"])
            def uses_namespace_module():
                return ns.tools.value()
        ''',
        "stages/memo.py": "import functools\n\n\n@functools.cache\ndef slow_double(x):\n    return 2 * x\n",
        "ns/tools.py": "def value():\n    return 1\n",  # ns/ has no __init__.py
        "params/p.yaml": "params: {}\n",
    })
    proj.run_json("p")
    proj.edit("stages/s.py", "return 1\n", "return 5\n")
    proj.edit("stages/memo.py", "2 * x", "3 * x")
    proj.edit("ns/tools.py", "return 1", "return 7")
    plan = " ".join(proj.experiment("plan", "p").stdout.split())
    assert "code changed: slow_double" in plan and "code changed: base" in plan and "code changed: value" in plan
    again = proj.run_json("p")
    assert statuses(again) == {("uses_lru", "p"): "ran", ("uses_namespace_module", "p"): "ran"}


def test_fingerprinter_unit_parts(tmp_path, monkeypatch):
    """A stage's parts name each helper; library code is not part of it."""
    import sys
    import textwrap

    pkg = tmp_path / "fpproj"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(textwrap.dedent('''
        import json
        LIMIT = {"a": [1, 2]}

        class Scaler:
            factor = 2

        def helper(x):
            return Scaler.factor * x

        def stage_fn(x):
            return json.dumps(helper(x) + LIMIT["a"][0])
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    mod = importlib.import_module("fpproj.mod")
    from orchestrator.keys.fingerprint import Fingerprinter

    fp = Fingerprinter(tmp_path).stage(mod.stage_fn)
    assert set(fp.parts) == {"fpproj.mod:stage_fn", "fpproj.mod:helper", "fpproj.mod:Scaler", "fpproj.mod:Scaler.factor",
                             "fpproj.mod:LIMIT"}
    assert Fingerprinter(tmp_path).stage(mod.stage_fn).digest == fp.digest
    sys.modules.pop("fpproj.mod", None)
    sys.modules.pop("fpproj", None)


def test_plan_explains_sets_that_were_served_from_the_cache(project):
    project.run_json("base")
    served = project.run_json("grid")  # grid[scale=1] equals base: served from the cache
    assert statuses(served)[("make_numbers", "grid[scale=1]")] == "cached"
    plan = json.loads(project.experiment("plan", "grid", "--set", "n=6", "--json").stdout)
    reasons = {(p["stage"], p["param_set"]): p["reasons"] for p in plan}
    assert reasons[("make_numbers", "grid[scale=1]")] == ["param n 5 -> 6"]


def test_an_edit_in_the_second_its_bytecode_was_written_still_runs_the_new_code(project, monkeypatch):
    import importlib.util
    import os
    from pathlib import Path

    import orchestrator

    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)  # Python writes .pyc files, as on most machines
    project.run_json("base")
    project.ran()
    helpers = project.root / "stages" / "helpers.py"
    pyc = Path(importlib.util.cache_from_source(str(helpers)))
    assert pyc.exists()
    saved = helpers.stat().st_mtime_ns
    project.edit("stages/helpers.py", "OFFSET = 10", "OFFSET = 11")  # the same size
    # as if saved in the second its .pyc was written in: Python's check (whole-second mtime, size) passes
    os.utime(helpers, ns=(saved, saved))
    os.utime(pyc, ns=(saved + 1000, saved + 1000))
    project.run_json("base")
    assert sorted(project.ran()) == ["shift", "summary", "total"]
    assert orchestrator.load("total", params="base", project_dir=project.root) == 85  # 80 with OFFSET = 10
