"""files(): the plan names the files that changed, and a pattern that matches nothing is an error naming it."""

from __future__ import annotations

STAGES = '''
from pathlib import Path

from orchestrator import files, stage

raw = files("data/**/*.txt", name="raw")
maybe = files("extra/*.csv", name="maybe", allow_empty=True)


@stage(inputs=["raw"], outputs=["count"])
def count(raw):
    return sum(len(Path(p).read_text().split()) for p in raw)


@stage(inputs=["maybe"], outputs=["extra"])
def extra(maybe):
    return len(maybe)
'''


def _project(make_project, **data):
    return make_project({"stages/__init__.py": "", "stages/s.py": STAGES, "params/p.yaml": "params: {}\n", **data})


def test_the_plan_says_which_files_were_added_removed_or_changed(make_project):
    proj = _project(make_project, **{"data/a.txt": "one two", "data/b.txt": "three", "data/sub/c.txt": "four"})
    proj.run_json("p")
    proj.write({"data/d.txt": "five", "data/e.txt": "six", "data/a.txt": "one two changed"})
    (proj.root / "data" / "sub" / "c.txt").unlink()
    plan = proj.experiment("plan", "p").stdout
    line = next(line for line in plan.splitlines() if " raw " in line)
    assert "data files: 2 files added, 1 removed, 1 changed" in line, plan
    assert "'" not in line.split("data files")[1]  # no digests
    assert proj.run_json("p")["status"] == "succeeded"


def test_a_pattern_that_matches_nothing_fails_naming_it_unless_allowed(make_project):
    proj = _project(make_project)
    summary = proj.run_json("p", "--keep-going", check=1)
    failed = next(n for n in summary["nodes"] if n["stage"] == "raw")
    assert failed["status"] == "failed"
    assert "files('data/**/*.txt', name='raw') matches no file" in failed["error"]["message"]
    assert "allow_empty=True" in failed["error"]["message"]
    extra = next(n for n in summary["nodes"] if n["stage"] == "extra")
    assert extra["status"] == "ran"  # allow_empty: an empty list is a result
