"""End-to-end behaviour of `experiment run` on a small real project."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import EXPERIMENT, statuses


def test_first_run_runs_everything_second_run_nothing(project):
    first = project.run_json("base")
    assert first["status"] == "succeeded"
    assert sorted(project.ran()) == ["double_all", "make_numbers", "shift", "summary", "total"]
    second = project.run_json("base")
    assert project.ran() == []
    assert set(statuses(second).values()) == {"cached"}
    assert [n["outputs"] for n in first["nodes"]] == [n["outputs"] for n in second["nodes"]]


def test_param_change_reruns_only_stages_taking_it(project):
    project.run_json("base")
    project.ran()
    result = project.run_json("base", "--set", "scale=3")
    assert sorted(project.ran()) == ["double_all", "summary", "total"]
    assert statuses(result)[("make_numbers", "base")] == "cached"
    assert statuses(result)[("shift", "base")] == "cached"


def test_cached_results_are_shared_across_param_files(project):
    project.run_json("base")
    project.ran()
    result = project.run_json("grid")
    # grid[scale=1] has the same params as base: only scale=2's double_all/total and the summary run
    assert sorted(project.ran()) == ["double_all", "summary", "total"]
    assert statuses(result)[("double_all", "grid[scale=1]")] == "cached"


def test_aggregate_receives_every_param_set(project):
    from orchestrator import load

    project.run_json("grid")
    os.chdir(project.root)
    summary = load("summary", params="grid")
    assert summary == {"grid[scale=1]": 2 * 10 + 60, "grid[scale=2]": 4 * 10 + 60}


def test_early_cutoff_spares_downstream_of_identical_outputs(project):
    project.run_json("base")
    project.ran()
    project.edit("stages/helpers.py", "return 2 * x", "return x + x")
    result = project.run_json("base")
    assert project.ran() == ["double_all"]
    assert statuses(result)[("total", "base")] == "cached"


def test_force_reruns_stage_and_cutoff_keeps_downstream(project):
    project.run_json("base")
    project.ran()
    result = project.run_json("base", "--force", "shift")
    assert project.ran() == ["shift"]
    assert statuses(result)[("shift", "base")] == "ran"
    assert statuses(result)[("total", "base")] == "cached"


def test_target_runs_only_what_it_needs(project):
    result = project.run_json("base", "--target", "shifted")
    assert sorted(project.ran()) == ["make_numbers", "shift"]
    assert set(statuses(result)) == {("make_numbers", "base"), ("shift", "base")}


def test_failed_stage_exits_1_names_it_and_resume_skips_finished_work(project):
    project.edit("stages/pipeline.py", 'mark("total")', 'mark("total")\n    raise ValueError("bad total")')
    proc = project.experiment("run", "base", check=1)
    assert "FAILED" in proc.stdout and "total" in proc.stdout and "bad total" in proc.stdout
    assert "experiment run base" in proc.stdout  # how to resume
    assert 'raise ValueError("bad total")' in proc.stdout  # the user's traceback
    assert "orchestrator/engine/worker.py" not in proc.stdout  # without the tool's own frames
    project.ran()
    project.edit("stages/pipeline.py", '\n    raise ValueError("bad total")', "")
    project.run_json("base")
    assert sorted(project.ran()) == ["summary", "total"]


def test_stop_at_first_failure_or_keep_going(make_project):
    files = {
        "stages/__init__.py": "",
        "stages/two.py": '''
            from orchestrator import stage

            @stage(outputs=["a"])
            def broken():
                raise RuntimeError("boom")

            @stage(inputs=["a"], outputs=["b"])
            def after(a):
                return a

            @stage(outputs=["c"])
            def independent():
                return 1
        ''',
        "params/p.yaml": "params: {}\n",
    }
    proj = make_project(files)
    stopped = proj.run_json("p", check=1)
    assert statuses(stopped)[("broken", "p")] == "failed"
    assert statuses(stopped)[("after", "p")] == "skipped"
    going = proj.run_json("p", "--keep-going", check=1)
    assert statuses(going)[("independent", "p")] in ("ran", "cached")
    assert statuses(going)[("after", "p")] == "skipped"


def test_wrong_number_of_outputs_fails_with_clear_message(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/s.py": '''
            from orchestrator import stage

            @stage(outputs=["train", "test"])
            def split():
                return [1, 2, 3]
        ''',
        "params/p.yaml": "params: {}\n",
    })
    summary = proj.run_json("p", check=1)
    error = summary["nodes"][0]["error"]
    assert "declares 2 outputs ['train', 'test'] but returned 3 values" in error["message"]


def test_path_annotated_input_receives_the_stored_file(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/files.py": '''
            from pathlib import Path
            from orchestrator import stage

            @stage(outputs=["report"])
            def write_report(ctx):
                path = ctx.scratch_dir / "report.txt"
                path.write_text("hello")
                return path

            @stage(inputs=["report"], outputs=["length"])
            def measure(report: Path):
                assert isinstance(report, Path) and "objects" in report.parts
                return len(report.read_text())
        ''',
        "params/p.yaml": "params: {}\n",
    })
    summary = proj.run_json("p")
    assert summary["status"] == "succeeded"
    from orchestrator import load

    os.chdir(proj.root)
    assert load("length", params="p") == 5


def test_killed_run_resumes_after_finished_stages(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/slow.py": '''
            import os, time
            from orchestrator import stage

            def mark(name):
                with open(os.environ["RUNS_LOG"], "a") as handle:
                    handle.write(name + "\\n")

            @stage(outputs=["a"])
            def first():
                mark("first")
                return 1

            @stage(inputs=["a"], outputs=["b"])
            def second(a):
                mark("second")
                return a + 1

            @stage(inputs=["b"], outputs=["c"])
            def third(b):
                mark("third-start")
                time.sleep(60)
                return b + 1
        ''',
        "params/p.yaml": "params: {}\n",
    })
    proj.kill_when_logged("third-start", "run", "p")
    assert proj.ran() == ["first", "second", "third-start"]
    proj.edit("stages/slow.py", "time.sleep(60)", "time.sleep(0)")
    summary = proj.run_json("p")
    assert proj.ran() == ["third-start"]
    assert statuses(summary) == {("first", "p"): "cached", ("second", "p"): "cached", ("third", "p"): "ran"}


def _flip_middle(data: bytes) -> bytes:
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0xFF
    return bytes(changed)


@pytest.mark.parametrize(("n", "kept"), [(5, "inline"), (3000, "file")])
def test_corrupted_object_is_detected_and_recomputed(project, n, kept):
    project.run_json("base", "--set", f"n={n}")
    project.ran()
    assert project.damage("make_numbers", "numbers", _flip_middle) == kept
    proc = project.experiment("run", "base", "--set", f"n={n}", "--set", "scale=5", "--json")
    assert "corrupt" in proc.stderr
    assert "make_numbers" in project.ran()
    import json

    assert json.loads(proc.stdout)["status"] == "succeeded"


def test_missing_object_is_recomputed(project):
    first = project.run_json("base", "--set", "n=3000")  # outputs big enough for files of their own
    project.ran()
    from orchestrator.store.local import LocalStore as Store

    store = Store(project.root / "cache")
    doubled = next(n for n in first["nodes"] if n["stage"] == "double_all")
    store.discard_object(store.get_record(doubled["key"]).outputs["doubled"].object)
    plan = project.experiment("plan", "base", "--set", "n=3000").stdout
    assert "cached object of doubled is missing" in plan
    project.run_json("base", "--set", "n=3000")
    assert project.ran() == ["double_all"]  # the same list again: total stays cached


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/s.py": '''
            import os, time
            from orchestrator import stage

            @stage(outputs=["a"])
            def first():
                return 1

            @stage(inputs=["a"], outputs=["b"])
            def slow(a):
                with open(os.environ["RUNS_LOG"], "a") as handle:
                    handle.write("slow\\n")
                time.sleep(60)
                return a
        ''',
        "params/p.yaml": "params: {}\n",
    })
    # (a shell's background job inherits SIGINT ignored, and Python keeps it so: as from a terminal, it is not)
    proc = subprocess.Popen([*EXPERIMENT, "run", "p"], cwd=proj.root, env=proj.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and not proj.log.exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted" in out and "experiment run p" in out
    summary = proj.run_json("p", "--target", "a")
    assert statuses(summary) == {("first", "p"): "cached"}


def test_the_resume_command_keeps_the_run_options_but_not_force(project):
    project.edit("stages/pipeline.py", 'mark("total")', 'mark("total")\n    raise ValueError("bad total")')
    proc = project.experiment("run", "base", "--set", "scale=2", "--force", "shift", "-j", "2",
                              "--workers", "0", "--shard", "1/2", "--keep-going", check=1)
    line = next(line for line in proc.stdout.splitlines() if "experiment run base" in line)
    command = line[line.index("experiment run base"):].split()
    assert command[:3] == ["experiment", "run", "base"] and "--force" not in command
    for option in (["--set", "scale=2"], ["--jobs", "2"], ["--workers", "0"], ["--shard", "1/2"], ["--keep-going"]):
        assert " ".join(option) in " ".join(command), (option, command)


def test_a_killed_run_still_explains_the_stages_it_finished(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/slow.py": '''
            import os, time
            from orchestrator import stage

            @stage(outputs=["a"])
            def prepare(size: int = 3):
                time.sleep(1.2)
                return list(range(size))

            @stage(inputs=["a"], outputs=["b"])
            def train(a):
                with open(os.environ["RUNS_LOG"], "a") as handle:
                    handle.write("train-start\\n")
                time.sleep(60)
                return a
        ''',
        "params/p.yaml": "params: {size: 3}\n",
    })
    proj.kill_when_logged("train-start", "run", "p")
    plan = json.loads(proj.experiment("plan", "p", "--set", "size=4", "--json").stdout)
    assert {p["stage"]: p["reasons"] for p in plan}["prepare"] == ["param size 3 -> 4"]  # not "no cached result"
