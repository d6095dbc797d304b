"""The package's layout holds: no import cycles, and every module path written as a string imports."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import orchestrator

PACKAGE = Path(orchestrator.__file__).parent


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its body (lazy and type-only imports too)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        base = name.split(".") if is_package else name.split(".")[:-1]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                target = (".".join(base[: len(base) - node.level + 1] + [node.module or ""]).rstrip(".")
                          if node.level else node.module or "")
                for alias in node.names:
                    deps.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 90  # the walk saw the whole package
    assert cycles(graph) == []


def test_the_cycle_check_sees_lazy_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    lazy = import_graph()["orchestrator.engine.context"]  # ctx.torchrun imports the stage side in its body
    assert "orchestrator.torchrun.stage" in lazy


def test_records_and_keys_stay_below_the_facade():
    graph = import_graph()
    for name, deps in graph.items():
        if name.startswith(("orchestrator.records", "orchestrator.keys", "orchestrator.store",
                            "orchestrator.engine", "orchestrator.map", "orchestrator.torchrun")):
            assert "orchestrator.api" not in deps, f"{name} imports the api facade"
            assert not any(d.startswith("orchestrator.cli") for d in deps), f"{name} imports the CLI"


def _string_paths() -> list[str]:
    """Every ``orchestrator.x.y`` or ``orchestrator.x:Attr`` written as a string literal in the package."""
    found = set()
    for path, _ in _modules().values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if text.startswith("orchestrator.") and " " not in text and text.replace(".", "").replace(
                        ":", "").replace("_", "").isalnum() and not text.startswith("orchestrator.stage"):
                    found.add(text)
    return sorted(found)


@pytest.mark.parametrize("path", _string_paths())
def test_module_paths_written_as_strings_import(path):
    module, _, attr = path.partition(":")
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError:
        parent, _, attr = module.rpartition(".")
        imported = importlib.import_module(parent)
    assert not attr or hasattr(imported, attr), path


def test_the_string_paths_were_found():
    paths = _string_paths()
    assert "orchestrator.torchrun.agent" in paths  # `python -m orchestrator.torchrun.agent`
    assert "orchestrator.lifeline" in paths  # preloaded by forkservers
    assert "orchestrator.executors.ray:RayExecutor" in paths


def test_lazy_registries_and_exports_resolve():
    from orchestrator.cachers import get_cacher
    from orchestrator.cachers.registry import lazy_paths as lazy_cachers
    from orchestrator.executors.base import lazy_paths as lazy_executors

    for name in lazy_cachers():
        assert get_cacher(name).name == name
    for name, path in lazy_executors().items():
        module, _, attr = path.partition(":")
        assert getattr(importlib.import_module(module), attr).name == name
    for name in orchestrator.__all__:
        assert getattr(orchestrator, name) is not None
