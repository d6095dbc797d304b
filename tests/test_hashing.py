"""Canonical hashing: distinct for distinct values, stable across releases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.keys.hashing import CHUNK, SCHEME, Encoded, hash_bytes, hash_file, hash_struct


def test_golden_hashes_stay_the_same():
    """Changing these invalidates every user's cache: bump SCHEME instead and update on purpose."""
    assert SCHEME == "orchestrator-key-v2"
    assert hash_bytes(b"orchestrator") == "73e4f1652612841ca6000244e7fdda62"
    assert hash_struct(["StageKey", 1, 2.5, None, True, {"b": [1], "a": "x"}]) == "792ee7a98daecd733cce27a471f9ae3a"


def test_type_and_boundary_sensitivity():
    values = [1, 1.0, True, "1", b"1", [1], (1,), {"1": 1}, ["a", "bc"], ["ab", "c"], None, 0, False]
    assert len({hash_struct(v) for v in values}) == len(values)


def test_dict_order_does_not_matter():
    assert hash_struct({"a": 1, "b": 2}) == hash_struct({"b": 2, "a": 1})


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1, 3 * (1 << 20) + 7])
@pytest.mark.parametrize("mapped", [True, False])
def test_file_hash_equals_bytes_hash(tmp_path, monkeypatch, size, mapped):
    import orchestrator.keys.hashing as hashing

    monkeypatch.setattr(hashing, "WINDOW", 1 << 20)  # several windows, and a short last one
    if not mapped:  # a file system that cannot map files: read in chunks instead, same digest
        def refuse(*_):
            raise OSError("mmap not supported")

        monkeypatch.setattr(hashing, "_hash_mapped", refuse)
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    path = tmp_path / "f"
    path.write_bytes(data)
    assert hash_file(path) == hash_bytes(data)


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=15,
)


@settings(max_examples=200, deadline=None)
@given(values, values)
def test_equal_values_hash_equal_and_distinct_values_differ(a, b):
    assert hash_struct(a) == hash_struct(a)
    if _canon(a) != _canon(b):
        assert hash_struct(a) != hash_struct(b)


def _canon(value):
    """Structural identity as the hash sees it (type-tagged, NaN equal to NaN)."""
    if isinstance(value, float):
        return ("f", repr(value))
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, list):
        return ("l", tuple(_canon(v) for v in value))
    if isinstance(value, dict):
        return ("d", tuple(sorted((k, _canon(v)) for k, v in value.items())))
    return (type(value).__name__, value)


@settings(max_examples=200, deadline=None)
@given(values, values)
def test_a_value_encoded_once_hashes_as_the_value_itself(a, b):
    """A shared part encoded once (a stage's code parts, spliced into every node's key) changes no hash."""
    assert hash_struct(["Key", Encoded(a), b]) == hash_struct(["Key", a, b])
    assert hash_struct({"x": Encoded((a, b))}) == hash_struct({"x": (a, b)})


class _Str(str):
    pass


def test_subclasses_of_the_fast_path_types_hash_as_before():
    """str, list, dict subclasses and non-str dict keys take the general path, with the same result as ever."""
    assert hash_struct(_Str("a")) == hash_struct("a")
    assert hash_struct({_Str("k"): 1, "j": [True, 2]}) == hash_struct({"k": 1, "j": [True, 2]})
    assert hash_struct({1: "a"}) != hash_struct({"1": "a"})
