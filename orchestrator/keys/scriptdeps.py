"""What an external script uses of each module it imports, read from its syntax tree (pure).

A torchrun script is keyed as a whole (it runs from the top), but the project modules it
imports need not be: ``from stages.models import MLP`` depends on ``MLP`` (and what ``MLP``
reaches), not on the ``Transformer`` beside it. :func:`used_names` says, per imported module,
which of its names the script reads, or ``None`` where the script may read anything of it
(``import *``, the module passed around as a value): then the whole module counts.
"""

from __future__ import annotations

import ast

__all__ = ["used_names"]


def used_names(tree: ast.AST) -> dict[str, set[str] | None]:
    """``{module: names the script reads from it}`` for its absolute imports (``None``: all of it)."""
    found: dict[str, set[str] | None] = {}
    aliases: dict[str, str] = {}  # a name bound by `import a.b as c` / `import a.b` -> the module it reaches

    def add(module: str, names: set[str] | None) -> None:
        if module in found and found[module] is None:
            return
        if names is None:
            found[module] = None
        else:
            found.setdefault(module, set()).update(names)  # type: ignore[union-attr]

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if any(alias.name == "*" for alias in node.names):
                add(node.module, None)
            else:
                add(node.module, {alias.name for alias in node.names})
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    aliases.setdefault(alias.name.split(".")[0], alias.name.split(".")[0])
                    for i in range(1, alias.name.count(".") + 2):
                        found.setdefault(".".join(alias.name.split(".")[:i]), set())
    if not aliases:
        return found
    chained: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in chained:  # (outer attributes come first)
            chain = _chain(node)
            if not chain or chain[0] not in aliases:
                continue
            for inner in ast.walk(node):
                chained.add(id(inner))
            module = aliases[chain[0]]
            parts = chain[1:]
            while parts and f"{module}.{parts[0]}" in found:  # a.b.c: walk down to the module it names
                module, parts = f"{module}.{parts[0]}", parts[1:]
            add(module, {parts[0]} if parts else None)
    for node in ast.walk(tree):  # a module name used other than through an attribute: all of it
        if isinstance(node, ast.Name) and node.id in aliases and id(node) not in chained:
            add(aliases[node.id], None)
    return found


def _chain(node: ast.Attribute) -> list[str]:
    names: list[str] = []
    current: ast.AST = node
    while isinstance(current, ast.Attribute):
        names.append(current.attr)
        current = current.value
    if not isinstance(current, ast.Name):
        return []
    return [current.id, *reversed(names)]
