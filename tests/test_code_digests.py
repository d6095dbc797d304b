"""The definition digests memoized in the store (``cache/codedigests.json``): used only for the same source bytes."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import statuses

from orchestrator.keys.definitions import ModuleDefinitions, memo_key
from orchestrator.keys.fingerprint import Fingerprinter
from orchestrator.store.codedigests import CodeDigests

SOURCE = textwrap.dedent('''
    """A module."""
    import functools


    def plain(x):
        """Docstring."""
        return x + 1


    def deco(fn):
        @functools.wraps(fn)
        def inner(*args):
            return fn(*args)
        return inner


    @deco
    def wrapped(x):
        return plain(x) * 2


    class Box:
        size = 3

        def grow(self, n):
            return self.size + n


    def twice():
        return 1


    def twice():  # redefined: the code object's first line tells them apart
        return 2


    def launches(ctx):
        ctx.torchrun("train.py", nproc_per_node=2)
''')


@pytest.fixture
def module(tmp_path, monkeypatch):
    pkg = tmp_path / "digestproj"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    yield importlib.import_module("digestproj.mod")
    sys.modules.pop("digestproj.mod", None)
    sys.modules.pop("digestproj", None)


def _objects(mod):
    return [mod.plain, mod.deco, mod.wrapped, mod.wrapped.__wrapped__, mod.Box, mod.Box.grow, mod.twice, mod.launches]


def test_a_memoized_payload_gives_the_digests_of_a_fresh_parse(module):
    source = Path(module.__file__).read_bytes()
    fresh = ModuleDefinitions.parse(source)
    expected = [fresh.digest(i) if i is not None else None for i in map(fresh.find, _objects(module))]
    assert expected[-1] is not None and expected[-1][1] == ("train.py",)  # the launched script is found
    assert None not in expected
    payload = json.loads(json.dumps(fresh.payload()))
    loaded = ModuleDefinitions.load(source, payload)
    assert [loaded.digest(i) if i is not None else None for i in map(loaded.find, _objects(module))] == expected
    assert not loaded.dirty and not loaded._parsed  # answered from the payload: the source was not parsed


def test_a_second_fingerprinter_with_the_memo_does_not_parse_and_agrees(module, tmp_path):
    memo_root = tmp_path / "cache"
    memo_root.mkdir()
    first = Fingerprinter(tmp_path, CodeDigests(memo_root))
    prints = [first.stage(fn) for fn in (module.wrapped, module.Box.grow, module.launches)]
    first.save()
    assert (memo_root / "codedigests.json").exists()
    plain = Fingerprinter(tmp_path)  # no memo at all: the reference
    assert [plain.stage(fn) for fn in (module.wrapped, module.Box.grow, module.launches)] == prints
    second = Fingerprinter(tmp_path, CodeDigests(memo_root))
    assert [second.stage(fn) for fn in (module.wrapped, module.Box.grow, module.launches)] == prints
    definitions = second.definitions("digestproj.mod")
    assert definitions is not None and not definitions._parsed


def test_a_stale_entry_is_never_handed_out(tmp_path):
    memo = CodeDigests(tmp_path)  # (an existing folder: a memo never creates the store)
    memo.put("/p/mod.py", memo_key(b"x = 1\n"), {"any": "thing"})
    memo.save()
    again = CodeDigests(tmp_path)
    assert again.get("/p/mod.py", memo_key(b"x = 1\n")) == {"any": "thing"}
    assert again.get("/p/mod.py", memo_key(b"x = 2\n")) is None  # same file, other bytes
    assert again.get("/p/other.py", memo_key(b"x = 1\n")) is None


@pytest.mark.parametrize("damage", [
    lambda text: text[: len(text) // 2],  # a partial write
    lambda text: "not json at all",
    lambda text: "\xff\xfe garbage",
    lambda text: json.dumps([1, 2, 3]),
    lambda text: text.replace('\\"digests\\"', '\\"digestz\\"'),  # the payload changed under its checksum
])
def test_a_damaged_memo_file_is_ignored(module, tmp_path, damage):
    memo_root = tmp_path / "cache"
    memo_root.mkdir()
    reference = Fingerprinter(tmp_path).stage(module.wrapped)
    first = Fingerprinter(tmp_path, CodeDigests(memo_root))
    first.stage(module.wrapped)
    first.save()
    path = memo_root / "codedigests.json"
    path.write_text(damage(path.read_text(encoding="utf-8")), encoding="utf-8")
    second = Fingerprinter(tmp_path, CodeDigests(memo_root))
    assert second.stage(module.wrapped) == reference
    second.save()  # and the memo is whole again
    assert CodeDigests(memo_root).get(module.__file__, memo_key(Path(module.__file__).read_bytes())) is not None


def test_a_payload_that_contradicts_its_source_is_dropped(module):
    source = Path(module.__file__).read_bytes()
    payload = ModuleDefinitions.parse(source).payload()
    shuffled = dict(payload, rows=payload["rows"][::-1])
    loaded = ModuleDefinitions.load(source, shuffled)
    loaded.tree  # parsing reveals rows that the same bytes contradict: the payload's digests go
    index = loaded.find(module.plain)
    assert index is not None and loaded.digest(index) == ModuleDefinitions.parse(source).digest(index)
    assert loaded.dirty


def test_an_edit_invalidates_the_memo_even_with_the_same_size_and_mtime(project):
    project.run_json("base")
    project.ran()
    memo = json.loads((project.root / "cache" / "codedigests.json").read_text())
    assert any(name.endswith("helpers.py") for name in memo)
    helpers = project.root / "stages" / "helpers.py"
    saved = helpers.stat().st_mtime_ns
    project.edit("stages/helpers.py", "return 2 * x", "return 3 * x")  # the same size
    os.utime(helpers, ns=(saved, saved))  # and the same modification time
    plan = project.experiment("plan", "base").stdout
    assert "code changed: double" in plan
    summary = project.run_json("base")
    assert sorted(project.ran()) == ["double_all", "summary", "total"]
    assert statuses(summary)[("shift", "base")] == "cached"
    # and back: the first source's digests again, so the first keys again
    project.edit("stages/helpers.py", "return 3 * x", "return 2 * x")
    os.utime(helpers, ns=(saved, saved))
    again = project.run_json("base")
    assert project.ran() == [] and set(statuses(again).values()) == {"cached"}


def test_a_corrupt_memo_file_leaves_runs_correct(project):
    project.run_json("base")
    project.ran()
    path = project.root / "cache" / "codedigests.json"
    path.write_text('{"broken": ')
    project.edit("stages/helpers.py", "return 2 * x", "return 3 * x")
    project.run_json("base")
    assert sorted(project.ran()) == ["double_all", "summary", "total"]
    json.loads(path.read_text())  # rewritten whole
    again = project.run_json("base")
    assert project.ran() == [] and set(statuses(again).values()) == {"cached"}


def test_a_plan_of_a_project_never_run_creates_no_store(project):
    project.experiment("plan", "base")
    assert not (project.root / "cache").exists()
    project.run_json("base")  # the store exists once the run ends: the memo is written then
    assert (project.root / "cache" / "codedigests.json").is_file()
