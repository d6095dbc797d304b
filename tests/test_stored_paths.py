"""Files a stage returns as paths inside a value are kept in the store, not left where they were written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import statuses

STAGES = '''
import os
from pathlib import Path

from orchestrator import stage


def mark(name):
    with open(os.environ["RUNS_LOG"], "a") as log:
        log.write(name + "\\n")


@stage(outputs=["words"])
def words(count: int = 6):
    return [f"word-{i}" for i in range(count)]


@stage(inputs=["words"], outputs=["files"], map_over="words")
def write(words, ctx):
    # a file per item in this worker's scratch folder (removed after the stage), under a name that
    # differs from run to run and process to process
    path = ctx.scratch_dir / f"{os.getpid()}-{os.urandom(4).hex()}.txt"
    path.write_text(words.upper())
    return path


@stage(inputs=["files"], outputs=["joined"])
def join(files):
    mark("join")
    return " ".join(Path(p).read_text() for p in files)


@stage(inputs=["words"], outputs=["records"], map_over="words")
def record(words, ctx):
    # a path inside an item's dict, not the item's result itself
    path = ctx.scratch_dir / f"{os.urandom(4).hex()}.txt"
    path.write_text(words)
    return {"word": words, "file": path}


@stage(outputs=["bundle"], cachers={"bundle": "pickle"})
def bundle(ctx):
    model = ctx.scratch_dir / "model.bin"
    model.write_bytes(b"weights" * 100)
    logs = ctx.scratch_dir / "logs"
    logs.mkdir()
    (logs / "epoch-0.txt").write_text("loss 1.0")
    return {"model": model, "logs": logs, "score": 0.5, "never_written": Path("/nonexistent/out.bin")}


@stage(inputs=["bundle"], outputs=["read"])
def read(bundle):
    return [bundle["model"].read_bytes()[:7].decode(), (bundle["logs"] / "epoch-0.txt").read_text(),
            str(bundle["never_written"])]
'''

FILES = {"stages/__init__.py": "", "stages/s.py": STAGES, "params/p.yaml": "params: {}\n"}


def _output(summary: dict, stage: str) -> str:
    node = next(n for n in summary["nodes"] if n["stage"] == stage)
    return next(iter(node["outputs"].values()))


def _verify(proj, *args: str) -> dict:
    return json.loads(proj.experiment("cache", "verify", "--json", *args, check=None).stdout)


def test_a_map_items_scratch_files_outlive_tmp_cleanup(make_project):
    proj = make_project(FILES)
    first = proj.run_json("p", "--target", "joined", "--workers", "2")
    assert statuses(first)[("join", "p")] == "ran"
    shutil.rmtree(proj.root / "cache" / "tmp")  # what tmp clean-up does a day later
    assert _verify(proj)["problems"] == []
    proj.edit("stages/s.py", 'mark("join")', 'mark("join, edited")')  # the consumer loads the map output again
    again = proj.run_json("p", "--target", "joined")
    assert statuses(again)[("write", "p")] == "cached"
    assert statuses(again)[("join", "p")] == "ran"

    from orchestrator import load

    assert load("joined", params="p", project_dir=proj.root) == " ".join(f"WORD-{i}" for i in range(6))
    files = load("files", params="p", project_dir=proj.root)
    cache = (proj.root / "cache").resolve()
    assert all(Path(f).resolve().is_relative_to(cache / "objects") for f in files)  # the stored, read-only copies


def test_the_map_output_bytes_do_not_depend_on_where_the_files_were_written(make_project):
    proj = make_project(FILES)
    inline = _output(proj.run_json("p", "--target", "files", "--workers", "0", "--cache-dir", "a"), "write")
    pooled = _output(proj.run_json("p", "--target", "files", "--workers", "2", "--cache-dir", "b"), "write")
    assert inline == pooled


def test_paths_inside_a_pickled_output_are_stored_and_load_as_local_copies(make_project):
    proj = make_project(FILES)
    summary = proj.run_json("p", "--target", "read")
    assert statuses(summary)[("read", "p")] == "ran"

    from orchestrator import load

    assert load("read", params="p", project_dir=proj.root) == ["weights", "loss 1.0", "/nonexistent/out.bin"]
    bundle = load("bundle", params="p", project_dir=proj.root)
    cache = (proj.root / "cache").resolve()
    assert bundle["model"].resolve().is_relative_to(cache) and bundle["model"].read_bytes() == b"weights" * 100
    assert (bundle["logs"] / "epoch-0.txt").read_text() == "loss 1.0"
    assert bundle["score"] == 0.5


def test_verify_reports_a_path_outside_the_store_and_a_missing_stored_file(make_project):
    proj = make_project(FILES)
    proj.run_json("p", "--target", "bundle")
    report = _verify(proj)
    outside = [p for p in report["problems"] if "outside the store" in p["message"]]
    assert [p["artifact"] for p in outside] == ["bundle"], report  # the path that was never written
    assert "/nonexistent/out.bin" in outside[0]["message"]

    from orchestrator.store.local import LocalStore

    store = LocalStore(proj.root / "cache")
    record = next(r for r in store.records() if r.stage == "bundle")
    assert len(record.outputs["bundle"].refs) == 2  # the model file and the logs folder
    store.discard_object(record.outputs["bundle"].refs[0])
    messages = [p["message"] for p in _verify(proj)["problems"]]
    assert any("missing from the store" in m for m in messages), messages

    _verify(proj, "--repair")  # forgets the record: the next run computes the stage again
    assert statuses(proj.run_json("p", "--target", "bundle"))[("bundle", "p")] == "ran"


def test_gc_keeps_the_files_an_artifact_holds(make_project):
    proj = make_project(FILES)
    proj.run_json("p", "--target", "bundle")

    from orchestrator import load
    from orchestrator.store.gc import collect_garbage
    from orchestrator.store.local import LocalStore

    store = LocalStore(proj.root / "cache")
    collect_garbage(store, grace=0)
    bundle = load("bundle", params="p", project_dir=proj.root)
    assert bundle["model"].read_bytes() == b"weights" * 100
    assert (bundle["logs"] / "epoch-0.txt").read_text() == "loss 1.0"


def test_a_path_inside_a_map_items_dict_is_stored_too(make_project):
    proj = make_project(FILES)
    proj.run_json("p", "--target", "records", "--workers", "2")
    shutil.rmtree(proj.root / "cache" / "tmp")

    from orchestrator import load

    records = load("records", params="p", project_dir=proj.root)
    assert [r["file"].read_text() for r in records] == [r["word"] for r in records] == [f"word-{i}" for i in range(6)]
