"""Normalized code: ASTs without docstrings, comments or positions, and what they reference (pure)."""

from __future__ import annotations

import ast
import textwrap
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "CTX_NAMES",
    "LAUNCHERS",
    "all_args",
    "attribute_chain",
    "code_struct",
    "ctx_usage",
    "find_definition",
    "normalized_ast",
    "plain_value",
    "relative",
    "strip_docstrings",
]

SIMPLE = (type(None), bool, int, float, str, bytes, complex)
LAUNCHERS = frozenset({"torchrun", "run_script"})  # ctx methods whose first literal arg is a script


def strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


def normalized_ast(source: str) -> str:
    """Dump ``source`` as an AST without docstrings, comments, formatting or positions."""
    tree = strip_docstrings(ast.parse(textwrap.dedent(source)))
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def plain_value(value: Any, refs: list[Any]) -> Any:
    """Convert simple containers of simple values for hashing; raise TypeError otherwise.

    Functions and classes inside the containers are replaced by their names and appended
    to ``refs`` so that their code is fingerprinted too.
    """
    if isinstance(value, SIMPLE):
        return value if not isinstance(value, complex) else repr(value)
    if isinstance(value, (types.FunctionType, type)):
        refs.append(value)
        return f"<code {value.__module__}:{value.__qualname__}>"
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, [plain_value(v, refs) for v in value]]
    if isinstance(value, (set, frozenset)):
        return ["set", sorted(repr(plain_value(v, refs)) for v in value)]
    if isinstance(value, dict):
        return {repr(k): plain_value(v, refs) for k, v in value.items()}
    raise TypeError(type(value).__name__)


def find_definition(index: dict[str, list[ast.AST]], obj: Any) -> ast.AST | None:
    """The def/class node of ``obj`` among its module's definitions (by name and first line), or None."""
    name = getattr(obj, "__name__", "")
    code = getattr(obj, "__code__", None)
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef) if code is not None else (ast.ClassDef,)
    matches = [n for n in index.get(name, ()) if isinstance(n, kinds)]
    if code is not None:
        line = code.co_firstlineno
        matches = [n for n in matches if line in (n.lineno, *(d.lineno for d in n.decorator_list))]
    return matches[0] if len(matches) == 1 else None


def all_args(node: ast.arguments) -> list[ast.arg]:
    args = [*node.posonlyargs, *node.args, *node.kwonlyargs]
    args += [a for a in (node.vararg, node.kwarg) if a is not None]
    return args


def attribute_chain(node: ast.Attribute) -> list[str]:
    chain: list[str] = []
    current: ast.AST = node
    while isinstance(current, ast.Attribute):
        chain.append(current.attr)
        current = current.value
    if not isinstance(current, ast.Name):
        return []
    chain.append(current.id)
    return chain[::-1]


CTX_NAMES = frozenset({"ctx", "context"})


def ctx_usage(nodes: Iterable[ast.AST]) -> tuple[set[str], list[str]]:
    """The ``ctx`` attributes read among ``nodes`` (an ``ast.walk``), and the scripts launched by literal path."""
    uses: set[str] = set()
    scripts: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in CTX_NAMES:
            uses.add(node.attr)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LAUNCHERS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            scripts.append(node.args[0].value)
    return uses, scripts


def code_struct(code: Any) -> Any:
    if code is None:
        return None
    consts = [code_struct(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return [code.co_code, consts, list(code.co_names)]


def relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
