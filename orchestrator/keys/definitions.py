"""The def and class statements of one module's source, and the digest of each one's code (pure).

A stage's fingerprint hashes the normalized syntax tree of every project function and class it
reaches (:meth:`orchestrator.keys.fingerprint.Fingerprinter.content`). Parsing a module, stripping
its docstrings and dumping one tree per definition cost about 0.1 ms per function, paid again by
every run. :class:`ModuleDefinitions` holds, for one module's source bytes, the table of its
definitions (kind, name, the lines a code object may start on) and the digests computed so far,
as a plain payload that a memo may keep between runs (``orchestrator.store.codedigests``).

The payload is a pure function of the source bytes, the Python version (its ``ast``) and this
module's algorithm, and :func:`memo_key` covers all three: a memo consulted by that key can
never hand a digest computed from other bytes, whatever the files' times say. Only the syntax
tree is memoized: the values code reads (module constants, closure cells, defaults) are
fingerprinted afresh in every process, since ``N = int(os.environ["N"])`` has no value in the
source. A payload that does not parse as expected is ignored, and the source is parsed again.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
from typing import Any

from .codeast import launched_scripts, strip_docstrings
from .hashing import SCHEME, hash_bytes, hash_struct

__all__ = ["FORMAT", "ModuleDefinitions", "memo_key"]

#: the version of the payload and of the digest algorithm; bump it when either changes
FORMAT = "definitions-v1"
_KINDS = ("def", "class")

# a definition: (kind, name, lines): ``lines`` are the def line and its decorators' lines, where
# the compiler may put a function's ``co_firstlineno``
Row = tuple[str, str, tuple[int, ...]]


def memo_key(source: bytes) -> str:
    """What a memoized payload of ``source`` is filed under: its bytes, this Python, this algorithm."""
    return hash_struct(["ModuleDefinitions", FORMAT, SCHEME, sys.version, hash_bytes(source)])


class ModuleDefinitions:
    """One module source's definitions; digests are computed on first use and kept.

    Build it with :meth:`parse` (from the source) or :meth:`load` (from a memoized payload,
    falling back to the source). ``dirty`` is true once a digest was computed that the payload
    it was loaded from lacked.
    """

    def __init__(self, source: bytes) -> None:
        self.source = source
        self.key = memo_key(source)
        self.dirty = False
        self._rows: list[Row] = []
        self._by_name: dict[str, list[int]] = {}
        self._digests: dict[int, tuple[str, tuple[str, ...]]] = {}
        self._parsed = False
        self._tree: ast.Module | None = None
        self._nodes: list[ast.AST] = []

    # -- building --------------------------------------------------------------------------
    @classmethod
    def parse(cls, source: bytes) -> ModuleDefinitions:
        """From the source alone (an unparsable source has no definitions)."""
        found = cls(source)
        found._parse()
        found._index(found._rows)
        found.dirty = True
        return found

    @classmethod
    def load(cls, source: bytes, payload: Any) -> ModuleDefinitions:
        """From a memoized payload of ``source``; a payload that is not one is ignored."""
        found = cls(source)
        try:
            rows, digests = _read_payload(payload)
        except (TypeError, ValueError, KeyError, AttributeError):
            return cls.parse(source)
        found._index(rows)
        found._digests = {i: d for i, d in digests.items() if i < len(rows)}
        return found

    def payload(self) -> dict[str, Any]:
        """The table and the digests computed so far, as JSON-ready values."""
        return {"format": FORMAT,
                "rows": [[kind, name, list(lines)] for kind, name, lines in self._rows],
                "digests": {str(i): [digest, list(scripts)] for i, (digest, scripts) in sorted(self._digests.items())}}

    # -- queries ---------------------------------------------------------------------------
    @property
    def tree(self) -> ast.Module | None:
        """The module's docstring-free syntax tree (parsed on first use; None if it does not parse)."""
        self._parse()
        return self._tree

    def find(self, obj: Any) -> int | None:
        """The definition of ``obj`` (an index), or None when there is not exactly one.

        A function by its *code's* name and first line (``functools.wraps`` rewrites ``__name__``,
        never ``co_name``); a class by its name, when only one class of that name exists.
        """
        code = getattr(obj, "__code__", None)
        if isinstance(code, types.CodeType):
            line = code.co_firstlineno
            matches = [i for i in self._by_name.get(code.co_name, ())
                       if self._rows[i][0] == "def" and line in self._rows[i][2]]
        else:
            matches = [i for i in self._by_name.get(getattr(obj, "__name__", ""), ()) if self._rows[i][0] == "class"]
        return matches[0] if len(matches) == 1 else None

    def node(self, index: int) -> ast.AST | None:
        """The syntax tree of definition ``index`` (parses the source if it was not)."""
        self._parse()
        return self._nodes[index] if index < len(self._nodes) else None

    def digest(self, index: int) -> tuple[str, tuple[str, ...]] | None:
        """The digest of definition ``index``'s normalized tree, and the scripts it launches by literal path."""
        found = self._digests.get(index)
        if found is None:
            node = self.node(index)
            if node is None:
                return None
            tree = ast.Module(body=[node], type_ignores=[])  # type: ignore[list-item]
            dump = ast.dump(tree, annotate_fields=False)
            scripts = tuple(launched_scripts(ast.walk(tree))) if "torchrun" in dump else ()
            found = self._digests[index] = (hash_struct(["Ast", dump]), scripts)
            self.dirty = True
        return found

    # -- internals -------------------------------------------------------------------------
    def _parse(self) -> None:
        if self._parsed:
            return
        self._parsed = True
        try:
            tree = strip_docstrings(ast.parse(importlib.util.decode_source(self.source)))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            tree = None
        rows: list[Row] = []
        nodes: list[ast.AST] = []
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                rows.append(("def", node.name, (node.lineno, *(d.lineno for d in node.decorator_list))))
            elif isinstance(node, ast.ClassDef):
                rows.append(("class", node.name, (node.lineno,)))
            else:
                continue
            nodes.append(node)
        self._tree = tree  # type: ignore[assignment]
        self._nodes = nodes
        if self._rows and rows != self._rows:  # (a payload that the same bytes contradict: never trust it)
            self._digests = {}
            self.dirty = True
        if self._rows != rows:
            self._index(rows)

    def _index(self, rows: list[Row]) -> None:
        self._rows = rows
        self._by_name = {}
        for i, (_, name, _) in enumerate(rows):
            self._by_name.setdefault(name, []).append(i)


def _read_payload(payload: Any) -> tuple[list[Row], dict[int, tuple[str, tuple[str, ...]]]]:
    """The rows and digests of a payload, checked field by field (raises on anything unexpected)."""
    if payload["format"] != FORMAT:
        raise ValueError("another format")
    rows: list[Row] = []
    for kind, name, lines in payload["rows"]:
        if kind not in _KINDS or not isinstance(name, str) or not all(type(n) is int for n in lines):
            raise ValueError("not a definition")
        rows.append((kind, name, tuple(lines)))
    digests: dict[int, tuple[str, tuple[str, ...]]] = {}
    for index, (digest, scripts) in payload["digests"].items():
        if not isinstance(digest, str) or len(digest) != 32 or not all(isinstance(s, str) for s in scripts):
            raise ValueError("not a digest")
        digests[int(index)] = (digest, tuple(scripts))
    return rows, digests
