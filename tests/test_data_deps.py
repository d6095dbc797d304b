"""Data named by params: the content of a path a param names is in the key; undeclared reads are caught."""

from __future__ import annotations

import json

from conftest import statuses

STAGES = '''
from pathlib import Path
from typing import Annotated

from orchestrator import Data, stage


@stage(outputs=["total"])
def count(input_path: Annotated[Path, Data(pattern="**/*.txt")]):
    folder = Path(input_path)
    return sum(len(p.read_text().split()) for p in sorted(folder.rglob("*.txt")))


@stage(outputs=["best"])
def checkpoint(ckp_file: Annotated[str, Data()]):
    return Path(ckp_file).read_text()


@stage(outputs=["labels"])
def sneaky():
    return Path("data/labels.csv").read_text().count(",")
'''


def _project(make_project):
    files = {
        "stages/__init__.py": "",
        "stages/s.py": STAGES,
        "params/p.yaml": "params:\n  input_path: data/corpus\n  ckp_file: runs/best.pt\n",
        "data/labels.csv": "a,b\n",
        "runs/best.pt": "epoch 3\n",
    }
    files.update({f"data/corpus/doc{i}.txt": "one two three\n" for i in range(3)})
    return make_project(files)


def test_a_folder_named_by_a_param_is_keyed_by_its_content(make_project):
    proj = _project(make_project)
    first = proj.run_json("p")
    assert statuses(first)[("count", "p")] == "ran"
    for i in range(3, 8):  # 5 files added
        (proj.root / "data" / "corpus" / f"doc{i}.txt").write_text("four five\n")
    (proj.root / "data" / "corpus" / "doc0.txt").write_text("changed text here now\n")  # 1 changed
    (proj.root / "data" / "corpus" / "notes.md").write_text("not matched by the pattern\n")
    plan = " ".join(proj.experiment("plan", "p").stdout.split())
    assert "data input_path ('data/corpus'): 5 files added, 1 changed" in plan
    assert "CACHED checkpoint" in plan
    second = proj.run_json("p")
    assert statuses(second)[("count", "p")] == "ran"
    assert statuses(second)[("checkpoint", "p")] == "cached"
    import orchestrator

    assert orchestrator.load("total", params="p", project_dir=proj.root) == 2 * 3 + 4 + 5 * 2


def test_a_file_named_by_a_param_is_keyed_by_its_content(make_project):
    proj = _project(make_project)
    proj.run_json("p")
    (proj.root / "runs" / "best.pt").write_text("epoch 4\n")
    plan = " ".join(proj.experiment("plan", "p").stdout.split())
    assert "data ckp_file ('runs/best.pt'): content changed" in plan
    assert statuses(proj.run_json("p"))[("checkpoint", "p")] == "ran"


def test_a_file_read_without_being_declared_is_reported_and_strict_data_fails_it(make_project):
    proj = _project(make_project)
    proc = proj.experiment("run", "p")
    assert "sneaky read data/labels.csv, which is not part of its key" in proc.stderr
    assert "count read" not in proc.stderr and "checkpoint read" not in proc.stderr  # declared data is fine
    explained = " ".join(proj.experiment("explain", "sneaky").stdout.split())
    assert "read files its key does not cover: data/labels.csv" in explained
    strict = proj.experiment("run", "p", "--strict-data", "--force", "sneaky", "--json", check=1)
    failed = {n["stage"]: n["error"]["message"] for n in json.loads(strict.stdout)["nodes"] if n["status"] == "failed"}
    assert list(failed) == ["sneaky"] and "(--strict-data)" in failed["sneaky"]
