"""Small outputs are kept inside their key record: what a user sees stays the same."""

from __future__ import annotations

import io
import os

import pytest

from orchestrator.cachers import get_cacher, streams
from orchestrator.cachers.builtin import TextCacher
from orchestrator.keys.hashing import hash_bytes, hash_file
from orchestrator.store.inline import INLINE_LIMIT, Spool
from orchestrator.store.local import LocalStore


def _expected_total(n: int, scale: int = 1) -> int:
    return sum(2 * x * scale for x in range(n)) + sum(x + 10 for x in range(n))


def test_small_outputs_live_in_their_key_record_and_large_ones_in_files(project):
    project.run_json("base", "--set", "n=3000")
    store = LocalStore(project.root / "cache")
    outputs = {a.name: a for r in store.records() for a in r.outputs.values()}
    assert {name for name, a in outputs.items() if a.data is not None} == {"total", "summary"}
    on_disk = {p.name for p in (project.root / "cache" / "objects").glob("*/*")}
    assert {outputs[name].object for name in ("numbers", "doubled", "shifted")} <= on_disk
    assert outputs["total"].object not in on_disk and outputs["summary"].object not in on_disk
    assert outputs["total"].size < INLINE_LIMIT < outputs["numbers"].size

    os.chdir(project.root)
    from orchestrator import load

    assert load("total", params="base", overrides={"n": 3000}) == _expected_total(3000)
    assert load("summary", params="base", overrides={"n": 3000}) == {"base": _expected_total(3000)}
    project.ran()
    again = project.run_json("base", "--set", "n=3000")
    assert {n["status"] for n in again["nodes"]} == {"cached"} and project.ran() == []


def test_a_small_output_changed_downstream_reruns_with_the_new_value(project):
    """Consumers read inline inputs (here every output is small) and see edits upstream."""
    first = project.run_json("base", "--set", "n=4")
    assert {n["stage"]: n["status"] for n in first["nodes"]}["total"] == "ran"
    project.ran()
    second = project.run_json("base", "--set", "n=4", "--set", "scale=3")
    assert sorted(project.ran()) == ["double_all", "summary", "total"]
    os.chdir(project.root)
    from orchestrator import load

    assert load("summary", params="base", overrides={"n": 4, "scale": 3}) == {"base": _expected_total(4, 3)}
    assert second["status"] == "succeeded"


def test_a_path_input_of_a_small_output_gets_a_real_read_only_file(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/files.py": '''
            import os
            import stat
            from pathlib import Path

            from orchestrator import stage


            @stage(outputs=["greeting"])
            def greet():
                return "hello"


            @stage(inputs=["greeting"], outputs=["report"])
            def inspect(greeting: Path):
                mode = greeting.stat().st_mode
                return {"text": greeting.read_text(), "read_only": not mode & stat.S_IWUSR,
                        "in_store": "objects" in greeting.parts}
        ''',
        "params/p.yaml": "params: {}\n",
    })
    assert proj.run_json("p")["status"] == "succeeded"
    os.chdir(proj.root)
    from orchestrator import load

    assert load("report", params="p") == {"text": "hello", "read_only": True, "in_store": True}


def test_spool_keeps_small_writes_in_memory_and_spills_large_ones_to_its_file(tmp_path):
    small = tmp_path / "small"
    with Spool(small, limit=8) as spool:
        spool.write(b"1234")
        spool.write(memoryview(b"5678"))
    assert spool.inline == b"12345678" and not small.exists()

    large = tmp_path / "large"
    with Spool(large, limit=8) as spool:
        spool.write(b"1234")
        spool.write(b"56789")
        spool.write(b"abc")
        assert spool.tell() == 12
    assert spool.inline is None and large.read_bytes() == b"123456789abc"


CASES = [
    ("pickle", {"nested": [1, (2, 3)], "fn": len}),
    ("json", {"a": [1, 2.5, "x", None, True]}),
    ("yaml", {"a": [1, 2], "b": {"c": "d"}}),
    ("text", "héllo\nwörld"),
    ("bytes", b"\x00\x01binary"),
]


@pytest.mark.parametrize(("name", "value"), CASES, ids=[c[0] for c in CASES])
def test_streamed_bytes_equal_the_saved_file_so_the_hashes_agree(tmp_path, name, value):
    cacher = get_cacher(name)
    assert streams(cacher)
    with Spool(tmp_path / "spooled") as spool:
        cacher.write(value, spool)
    saved = tmp_path / "saved"
    cacher.save(value, saved)
    assert spool.inline is not None and hash_bytes(spool.inline) == hash_file(saved)
    assert cacher.read(io.BytesIO(spool.inline)) == cacher.load(saved) == value


def test_only_cachers_that_define_their_streams_are_streamed():
    assert {n for n in ("pickle", "json", "yaml", "text", "bytes", "numpy", "parquet", "csv", "torch", "file", "dir")
            if streams(get_cacher(n))} == {"pickle", "json", "yaml", "text", "bytes"}

    class Shouting(TextCacher):  # changes how text is stored, but not write/read
        name = "shouting"

        def save(self, obj, path):
            path.write_text(obj.upper())

    class Streamed(TextCacher):  # changes both: streamed through its own write/read
        name = "streamed"

        def write(self, obj, file):
            file.write(obj[::-1].encode())

        def read(self, file):
            return file.read().decode()[::-1]

    assert not streams(Shouting()) and streams(Streamed())


def test_a_corrupt_inline_copy_is_a_verify_problem_and_repair_recomputes_it(project):
    project.run_json("base")
    project.ran()
    assert project.damage("total", "total", lambda data: data + b"x") == "inline"
    found = project.experiment("cache", "verify", check=1).stdout
    assert "total [base] total" in found and "kept in its key record is corrupt" in found
    project.experiment("cache", "verify", "--repair")
    project.run_json("base")
    assert project.ran() == ["total"]



SHOUTING = '''
from pathlib import Path
from orchestrator import Cacher, register_cacher, stage


class Shout(Cacher):
    name = "shout"
    extension = ".txt"

    def save(self, obj, path):
        Path(path).write_text(obj.upper())

    def load(self, path):
        return Path(path).read_text()

    def write(self, obj, file):
        file.write(obj.upper().encode())

    def read(self, file):
        return file.read().decode()


register_cacher(Shout)


@stage(outputs=["word"], cachers={"word": "shout"})
def word():
    return "hello"


@stage(inputs=["word"], outputs=["sentence"])
def sentence(word):
    return word + "!"
'''


def test_an_output_kept_inline_still_loads_after_its_cacher_stops_streaming(make_project):
    proj = make_project({"stages/__init__.py": "", "stages/s.py": SHOUTING, "params/p.yaml": "params: {}\n"})
    proj.run_json("p")
    record = next(r for r in LocalStore(proj.root / "cache").records() if r.stage == "word")
    assert record.outputs["word"].data is not None  # kept inside the key record
    # same cacher name and version, without write/read: the record is still valid, and loads through a file
    proj.edit("stages/s.py", "    def write(self, obj, file):\n        file.write(obj.upper().encode())\n\n"
              "    def read(self, file):\n        return file.read().decode()\n", "")
    rerun = proj.run_json("p", "--force", "sentence")
    assert {n["stage"]: n["status"] for n in rerun["nodes"]} == {"word": "cached", "sentence": "ran"}
    import orchestrator

    assert orchestrator.load("sentence", params="p", project_dir=proj.root) == "HELLO!"
    assert orchestrator.load("word", params="p", project_dir=proj.root) == "HELLO"
