"""Regressions for cache-correctness edge cases found by running the tutorial for real."""

from __future__ import annotations

import os

from conftest import statuses


def _proj(make_project, stages: str, params: str = "params: {}\n"):
    return make_project({"stages/__init__.py": "", "stages/s.py": stages, "params/p.yaml": params})


def test_helper_reading_ctx_seed_puts_the_seed_in_the_key(make_project):
    proj = _proj(make_project, '''
        from orchestrator import stage

        def init_weights(ctx):
            return ctx.seed

        @stage(outputs=["w"])
        def fit(ctx):
            return init_weights(ctx)
    ''', "params: {seed: 0}\n")
    first = proj.run_json("p")
    reseeded = proj.run_json("p", "--set", "seed=1")
    assert statuses(reseeded)[("fit", "p")] == "ran"
    assert first["nodes"][0]["outputs"] != reseeded["nodes"][0]["outputs"]


def test_function_reached_through_a_registry_dict_is_fingerprinted(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/helpers.py": '''
            def triple(n):
                return 3 * n

            MODELS = {"triple": triple}
        ''',
        "stages/s.py": '''
            from orchestrator import stage
            from .helpers import MODELS

            @stage(outputs=["y"])
            def via_dict(model: str = "triple"):
                return MODELS[model](2)
        ''',
        "params/p.yaml": "params: {}\n",
    })
    proj.run_json("p")
    proj.edit("stages/helpers.py", "return 3 * n", "return 4 * n")
    plan = proj.experiment("plan", "p").stdout
    assert "RUN" in plan and "triple" in plan


def test_files_content_change_reaches_ordinary_consumers(make_project):
    proj = _proj(make_project, '''
        from orchestrator import files, stage

        raw = files("data/*.csv", name="raw_files")

        @stage(inputs=["raw_files"], outputs=["rows"])
        def parse(raw_files):
            return [line for path in raw_files for line in path.read_text().split()]
    ''')
    (proj.root / "data").mkdir()
    (proj.root / "data" / "raw.csv").write_text("a,b\nc,d\n")
    proj.run_json("p")
    (proj.root / "data" / "raw.csv").write_text("a,b\nc,d\ne,f\n")
    summary = proj.run_json("p")
    assert statuses(summary)[("parse", "p")] == "ran"
    from orchestrator import load

    os.chdir(proj.root)
    assert load("rows", params="p") == ["a,b", "c,d", "e,f"]


def test_force_repairs_a_corrupt_object(project):
    project.run_json("base")
    project.damage("summary", "summary", lambda data: b"garbage")
    project.run_json("base", "--force", "summary")
    from orchestrator import load

    os.chdir(project.root)
    assert load("summary", params="base") == {"base": 2 * 10 + 60}


def test_exponent_floats_and_int_float_params(make_project):
    proj = _proj(make_project, '''
        from orchestrator import stage

        @stage(outputs=["y"])
        def scale(lr: float):
            return lr * 2
    ''', "params: {lr: 1e-3}\n")
    first = proj.run_json("p")
    assert first["status"] == "succeeded"
    assert proj.run_json("p", "--set", "lr=3e-1")["status"] == "succeeded"
    one = proj.run_json("p", "--set", "lr=1")
    same = proj.run_json("p", "--set", "lr=1.0")
    assert statuses(same)[("scale", "p")] == "cached"
    assert one["nodes"][0]["key"] == same["nodes"][0]["key"]


def test_returning_a_missing_path_is_a_clear_failure(make_project):
    proj = _proj(make_project, '''
        from orchestrator import stage

        @stage(outputs=["out"])
        def write(ctx):
            return ctx.scratch_dir / "never-written.txt"
    ''')
    summary = proj.run_json("p", check=1)
    assert "which does not exist" in summary["nodes"][0]["error"]["message"]


def test_set_on_a_grid_dimension_is_refused(project):
    proc = project.experiment("run", "grid", "--set", "scale=5", check=2)
    assert "scale is a grid dimension" in proc.stderr


def test_load_names_the_overrides_in_its_fix(project):
    import pytest

    from orchestrator import ArtifactNotCached, load

    os.chdir(project.root)
    with pytest.raises(ArtifactNotCached, match=r"experiment run base --set scale=7 --target total"):
        load("total", params="base", overrides={"scale": 7})


def test_failure_with_parallel_jobs_terminates(make_project):
    proj = _proj(make_project, '''
        import time
        from orchestrator import stage

        @stage(outputs=["a"])
        def broken():
            raise RuntimeError("boom")

        @stage(outputs=["b"])
        def slow():
            time.sleep(1)
            return 1

        @stage(inputs=["b"], outputs=["c"])
        def after(b):
            return b
    ''')
    summary = proj.run_json("p", "--jobs", "2", check=1)
    assert statuses(summary)[("broken", "p")] == "failed"
