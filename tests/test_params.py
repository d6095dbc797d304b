"""Param files: extends, sets, grids, overrides, and the errors for each mistake."""

from __future__ import annotations

import pytest
from conftest import write_files

from orchestrator.errors import ParamsError
from orchestrator.project.params import apply_override, load_experiment, parse_override


def load(tmp_path, files, names, overrides=()):
    write_files(tmp_path, files)
    return load_experiment(tmp_path, names, overrides)


def test_extends_chain_deep_merges(tmp_path):
    files = {
        "a.yaml": "params: {opt: {lr: 0.1, momentum: 0.9}, hidden: 8}\n",
        "b.yaml": "extends: a\nparams: {opt: {lr: 0.2}}\n",
        "c.yaml": "extends: b\nparams: {hidden: 16}\n",
    }
    exp = load(tmp_path, files, ["c"])
    assert [s.name for s in exp.sets] == ["c"]
    assert exp.sets[0].values == {"opt": {"lr": 0.2, "momentum": 0.9}, "hidden": 16}


def test_sets_and_grid_are_crossed_and_named(tmp_path):
    files = {"s.yaml": "params: {lr: 1}\nsets:\n  - {name: small, hidden: 8}\n  - {name: big, hidden: 64}\n"
                       "grid:\n  lr: [0.1, 0.01]\n"}
    exp = load(tmp_path, files, ["s"])
    assert [s.name for s in exp.sets] == ["small[lr=0.1]", "small[lr=0.01]", "big[lr=0.1]", "big[lr=0.01]"]
    assert exp.set_named("big[lr=0.01]").values == {"lr": 0.01, "hidden": 64}


def test_overrides_are_yaml_typed_and_dotted(tmp_path):
    files = {"p.yaml": "params: {opt: {lr: 0.1}, name: x}\n"}
    exp = load(tmp_path, files, ["p"], ["opt.lr=0.5", "layers=[1, 2]", "name=abc", "flag=true"])
    assert exp.sets[0].values == {"opt": {"lr": 0.5}, "layers": [1, 2], "name": "abc", "flag": True}


def test_python_param_file(tmp_path):
    files = {"py.py": "def get_params():\n    return [{'name': 'one', 'lr': 0.1}, {'lr': 0.2}]\n"}
    exp = load(tmp_path, files, ["py"])
    assert [s.name for s in exp.sets] == ["one", "py[1]"]


@pytest.mark.parametrize(
    ("files", "names", "overrides", "message"),
    [
        ({"base.yaml": "params: {}\n"}, ["bsae"], (), "Did you mean 'base'?"),
        ({"a.yaml": "extends: b\n", "b.yaml": "extends: a\n"}, ["a"], (), "extends cycle: a -> b -> a"),
        ({"a.yaml": "params: {x: 1}\nparms: {}\n"}, ["a"], (), "Did you mean 'params'?"),
        ({"a.yaml": "params:\n  x: [1, 2\n"}, ["a"], (), "a.yaml:3:1: malformed YAML"),
        ({"a.yaml": "grid:\n  lr: 0.1\n"}, ["a"], (), "grid: lr must be a non-empty list"),
        ({"a.yaml": "sets:\n  - {name: x}\n  - {name: x}\n"}, ["a"], (), "appears twice"),
        ({"a.yaml": "params: {opt: 3}\n"}, ["a"], ("opt.lr=1",), "'opt' is 3, not a mapping"),
        ({"a.yaml": "params: {}\n"}, ["a"], ("novalue",), "expected KEY=VALUE"),
        ({"a.yaml": "- 1\n"}, ["a"], (), "must be a mapping"),
        ({"a.yaml": "params: {}\n"}, ["../a"], (), "not a path"),
    ],
)
def test_mistakes_are_clear_errors(tmp_path, files, names, overrides, message):
    with pytest.raises(ParamsError) as info:
        load(tmp_path, files, names, overrides)
    assert message in str(info.value)


def test_parse_and_apply_override():
    assert parse_override("a.b=0.1") == ("a.b", 0.1)
    assert apply_override({"a": {"c": 1}}, "a.b", 2, where="x") == {"a": {"c": 1, "b": 2}}
