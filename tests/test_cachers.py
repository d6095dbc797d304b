"""Every cacher through the same round trip; choice by type; custom cachers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.cachers import (
    Cacher,
    choose_cacher,
    get_cacher,
    register_cacher,
    registered_cachers,
)
from orchestrator.errors import UnknownCacherError
from orchestrator.store.local import LocalStore as Store


def _frame():
    return pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.5, 1.5, np.nan]})


def _equal(a, b):
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    elif type(a).__module__.startswith("torch"):
        import torch

        assert torch.equal(a, b)
    else:
        assert a == b


CASES = [
    ("pickle", lambda: {"nested": [1, (2, 3)], "fn": len}),
    ("json", lambda: {"a": [1, 2.5, "x", None, True]}),
    ("yaml", lambda: {"a": [1, 2], "b": {"c": "d"}}),
    ("text", lambda: "héllo\nwörld"),
    ("bytes", lambda: b"\x00\x01binary"),
    ("numpy", lambda: np.arange(12, dtype=np.float32).reshape(3, 4)),
    ("parquet", _frame),
    ("csv", lambda: pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})),
    ("torch", lambda: __import__("torch").arange(6).reshape(2, 3)),
]


@pytest.mark.parametrize(("name", "make"), CASES, ids=[c[0] for c in CASES])
def test_round_trip_through_the_store(tmp_path, name, make):
    store = Store(tmp_path)
    cacher = get_cacher(name)
    value = make()
    staged = store.workspace.staging_path(cacher.extension)
    cacher.save(value, staged)
    digest, size, kind = store.ingest(staged)
    assert size > 0 and kind == cacher.kind
    from orchestrator.store.base import ArtifactRecord

    record = ArtifactRecord("x", "h", digest, name, cacher.version, size, kind)
    _equal(value, cacher.load(store.verified_path(record)))


def test_every_builtin_is_covered_by_the_contract_suite():
    from orchestrator.cachers.builtin import BUILTINS

    builtins = {c.name for c in BUILTINS}
    assert {c[0] for c in CASES} | {"file", "dir"} == builtins
    assert builtins <= set(registered_cachers())  # (other tests register cachers of their own)


def test_file_and_dir_cachers_ingest_paths(tmp_path):
    store = Store(tmp_path / "store")
    source = tmp_path / "out"
    source.mkdir()
    (source / "a.txt").write_text("A")
    (source / "sub").mkdir()
    (source / "sub" / "b.txt").write_text("B")
    for name, value in (("file", source / "a.txt"), ("dir", source)):
        cacher = choose_cacher(value)
        assert cacher.name == name
        staged = store.workspace.staging_path()
        cacher.save(value, staged)
        digest, _, kind = store.ingest(staged)
        stored = store.object_path(digest)
        assert kind == name and stored.exists()
        if name == "dir":
            assert (stored / "sub" / "b.txt").read_text() == "B"
            # the same folder again is stored once
            again = store.workspace.staging_path()
            cacher.save(value, again)
            assert store.ingest(again)[0] == digest and not again.exists()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.zeros(3), "numpy"),
        (pd.DataFrame({"a": [1]}), "parquet"),
        ({"a": 1}, "json"),
        ({1: "int keys do not survive json"}, "pickle"),
        (list(range(10_000)), "json"),
        (list(range(10_001)), "pickle"),  # too big to read: pickled (10x faster to write and load)
        ({"a": "x" * 2**20}, "pickle"),
        ({str(i): i for i in range(10_001)}, "pickle"),
        ("text", "text"),
        (b"raw", "bytes"),
        ((1, 2), "pickle"),
        (Path(__file__), "file"),
    ],
)
def test_choice_by_type(value, expected):
    assert choose_cacher(value).name == expected


def test_unknown_cacher_suggests():
    with pytest.raises(UnknownCacherError, match="Did you mean 'numpy'"):
        get_cacher("nunpy")


def test_custom_cacher_registration(tmp_path):
    class Counting(Cacher):
        name = "counting"
        version = "3"

        def save(self, obj, path):
            path.write_text(str(len(obj)))

        def load(self, path):
            return int(path.read_text())

    register_cacher(Counting)
    cacher = get_cacher("counting")
    target = tmp_path / "x"
    cacher.save([1, 2, 3], target)
    assert cacher.load(target) == 3
    with pytest.raises(TypeError):
        register_cacher(dict)  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(json_values)
def test_pickle_round_trips_any_value(tmp_path_factory, value):
    path = tmp_path_factory.mktemp("p") / "v.pkl"
    cacher = get_cacher("pickle")
    cacher.save(value, path)
    assert cacher.load(path) == value


DETERMINISM = r'''
import json, os, stat, sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from orchestrator.cachers import get_cacher
from orchestrator.keys.hashing import hash_file
from orchestrator.store.localfs import hash_tree

out = Path(sys.argv[1])
tag = os.environ["PYTHONHASHSEED"]  # file names differ too, as staging names do
source = out / f"src-{tag}"
(source / "folder" / "empty").mkdir(parents=True)
(source / "folder" / "run.sh").write_text("echo hi\n")
os.chmod(source / "folder" / "run.sh", 0o755)
(source / "file.txt").write_text("content\n")
words = {"alpha", "beta", "gamma", "delta", "epsilon"}
values = {
    "pickle": {"words": words, "frozen": frozenset(words), "nested": [{"k": {"a", "b", "c"}}], "n": (1, 2.5)},
    "json": {"b": [1, 2], "a": "x"},
    "yaml": {"s": sorted(words), "t": {"z": 1, "y": 2}},
    "text": "héllo",
    "bytes": b"\x00\x01",
    "numpy": np.arange(12).reshape(3, 4),
    "parquet": pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
    "csv": pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
    "torch": {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2)},
    "file": source / "file.txt",
    "dir": source / "folder",
}
hashes = {}
for name, value in values.items():
    target = out / f"{name}-{tag}-{os.getpid()}"
    get_cacher(name).save(value, target)
    hashes[name] = hash_tree(target)[0] if target.is_dir() else hash_file(target)
print(json.dumps(hashes))
'''


def test_every_builtin_cacher_writes_equal_bytes_for_equal_values_in_any_process(tmp_path):
    """Two processes with different hash seeds and file names store byte-identical objects."""
    import json
    import os
    import subprocess
    import sys

    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", DETERMINISM, str(tmp_path)], env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    from orchestrator.cachers.builtin import BUILTINS

    assert set(runs[0]) == {cls.name for cls in BUILTINS}  # every built-in cacher, a new one too
    different = {name for name in runs[0] if runs[0][name] != runs[1][name]}
    assert not different, f"different bytes for equal values: {sorted(different)}"


def test_a_folder_output_hashes_its_empty_folders_and_exec_bits(tmp_path):
    from orchestrator.store.localfs import hash_tree

    def folder(name, *, empty=False, executable=False):
        root = tmp_path / name
        (root / "data").mkdir(parents=True)
        (root / "data" / "x.txt").write_text("x")
        if empty:
            (root / "logs").mkdir()
        if executable:
            (root / "data" / "x.txt").chmod(0o755)
        return hash_tree(root)[0]

    plain = folder("a")
    assert folder("b") == plain
    assert folder("c", empty=True) != plain
    assert folder("d", executable=True) != plain


_SCALAR = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(), st.booleans(),
                    st.none())


@settings(max_examples=200, deadline=None)
@given(values=st.lists(_SCALAR, max_size=30) | st.lists(st.integers(), max_size=30) | st.lists(st.text(), max_size=30))
def test_json_of_a_flat_list_has_the_bytes_json_dumps_writes(values, tmp_path_factory):
    """Flat lists take a fast path (a map's output of 100,000 ints); their stored bytes must not change."""
    import json

    path = tmp_path_factory.mktemp("json") / "v.json"
    cacher = get_cacher("json")
    assert cacher.accepts(values)
    cacher.save(values, path)
    assert path.read_bytes() == json.dumps(values, indent=1, sort_keys=True, allow_nan=False).encode("utf-8")
    assert cacher.load(path) == values


def test_json_refuses_a_flat_list_with_a_nan():
    assert not get_cacher("json").accepts([1.0, float("nan")])
    assert not get_cacher("json").accepts([1, float("inf")])
