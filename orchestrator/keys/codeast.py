"""Normalized code: syntax trees without docstrings, comments or positions (pure).

The *content* of a function or class is hashed from its normalized syntax tree, so
comments, docstrings and formatting never change a key; what the code *refers to* is
read from its bytecode instead (:mod:`orchestrator.keys.coderefs`).
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterable
from pathlib import Path

__all__ = ["LAUNCHERS", "launched_gpus", "launched_scripts", "normalized_ast", "relative", "strip_docstrings"]

LAUNCHERS = frozenset({"torchrun"})  # ctx methods whose first literal argument is a script


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


def launched_scripts(nodes: Iterable[ast.AST]) -> list[str]:
    """Scripts launched by a literal path among ``nodes`` (an ``ast.walk``): ``ctx.torchrun("x.py")``."""
    scripts: list[str] = []
    for node in nodes:
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LAUNCHERS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            scripts.append(node.args[0].value)
    return scripts


def launched_gpus(nodes: Iterable[ast.AST]) -> int | None:
    """GPUs the ``ctx.torchrun(...)`` calls among ``nodes`` ask for: the largest literal ``gpus=``, else
    ``nproc_per_node=`` (one GPU per rank), else 1 (``"auto"`` or a value known only at run time);
    None without such a call."""
    asked: int | None = None
    for node in nodes:
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LAUNCHERS):
            continue
        literal = {k.arg: k.value.value for k in node.keywords if k.arg and isinstance(k.value, ast.Constant)}
        counts = [v for v in (literal.get("gpus"), literal.get("nproc_per_node"))
                  if isinstance(v, int) and not isinstance(v, bool) and v > 0]
        count = counts[0] if counts else 1
        asked = max(asked or 0, count)
    return asked


def relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
