"""Code fingerprints: what a stage's code *means*, not how its file looks.

A stage's fingerprint covers the normalized AST of its function (docstrings, comments
and formatting dropped) and, transitively, every project-local function, class and
module constant it references, plus any external script it launches. Editing a helper
changes the fingerprint of exactly the stages that reach it; editing a comment, a
docstring or an unrelated stage in the same file changes nothing.

The fingerprint keeps one hash per part (``"stages.helpers:normalize"``), so a plan can
say *which* piece of code changed. Reads source files, but is otherwise pure and memoized
per process.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import logging
import sys
import sysconfig
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .codeast import (
    all_args,
    attribute_chain,
    code_struct,
    ctx_usage,
    find_definition,
    normalized_ast,
    plain_value,
    relative,
    strip_docstrings,
)
from .hashing import hash_struct

logger = logging.getLogger(__name__)

__all__ = ["CodeFingerprint", "Fingerprinter", "normalized_ast"]



@dataclass(frozen=True)
class CodeFingerprint:
    """The fingerprint of one stage's code.

    Attributes:
        digest: Hash over all parts.
        parts: Hash per piece of code (``module:qualname``, ``script:path``, ``version``).
        ctx_uses: Attributes of ``ctx`` the stage function reads (``params``, ``seed``...).
        scripts: External scripts the stage launches (project-relative posix paths).
    """

    digest: str
    parts: dict[str, str]
    ctx_uses: frozenset[str]
    scripts: tuple[str, ...]


def _is_code(value: Any) -> bool:
    """A function or class, or a wrapper of one (``functools.cache``, ``lru_cache``, ``wraps``)."""
    if isinstance(value, (types.FunctionType, type)):
        return True
    if not callable(value) or getattr(value, "__wrapped__", None) is None:
        return False
    try:
        return isinstance(inspect.unwrap(value), types.FunctionType)
    except (ValueError, TypeError):  # a wrapper loop, or an object that fakes every attribute
        return False


def _stdlib_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    roots = {Path(paths[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.add(Path(sys.prefix).resolve())
    roots.add(Path(sys.base_prefix).resolve())
    return tuple(roots)


class Fingerprinter:
    """Computes and memoizes code fingerprints for one project root."""

    def __init__(self, project_root: Path) -> None:
        self.root = project_root.resolve()
        self._excluded = tuple(r for r in _stdlib_roots() if not self.root.is_relative_to(r))
        self._local_files: dict[str, bool] = {}
        self._objects: dict[int, tuple[str, str, list[Any]]] = {}
        self._scripts: dict[Path, tuple[str, list[Path]]] = {}
        self._module_trees: dict[str, ast.Module | None] = {}
        self._usage: dict[str, tuple[set[str], list[str]]] = {}
        self._index: dict[str, dict[str, list[ast.AST]]] = {}

    # -- public ------------------------------------------------------------------------
    def stage(
        self, fn: Any, *, version: str | None = None, scripts: tuple[str, ...] = (), extra: tuple[Any, ...] = ()
    ) -> CodeFingerprint:
        """Fingerprint a stage function (and ``extra`` functions such as its setup) with what they reach."""
        fn = inspect.unwrap(fn)
        parts: dict[str, str] = {}
        self._walk(fn, parts)
        for other in extra:
            self._walk(other, parts)
        # what the stage (or any project function it reaches) reads of ctx, and the scripts it launches
        ctx_uses: set[str] = set()
        found_scripts: list[str] = list(scripts)
        for label in parts:
            uses, literals = self._usage.get(label, (set(), []))
            ctx_uses |= uses
            found_scripts += [s for s in literals if s not in found_scripts]
        for script in found_scripts:
            self._walk_script(self.root / script, parts)
        if version is not None:
            parts["version"] = hash_struct(version)
        digest = hash_struct(["Code", sorted(parts.items())])
        return CodeFingerprint(digest, parts, frozenset(ctx_uses), tuple(found_scripts))

    def script(self, path: Path) -> dict[str, str]:
        """Fingerprint parts of an external script and the project-local modules it imports."""
        parts: dict[str, str] = {}
        self._walk_script(path, parts)
        return parts

    # -- python objects --------------------------------------------------------------------
    def _walk(self, root: Any, parts: dict[str, str]) -> None:
        stack = [root]
        seen: set[int] = set()
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            entry = self._describe(obj)
            if entry is None:
                continue
            label, digest, refs = entry
            parts[label] = digest
            stack.extend(refs)

    def _describe(self, obj: Any) -> tuple[str, str, list[Any]] | None:
        if isinstance(obj, _Constant):
            return self._describe_constant(obj)
        cached = self._objects.get(id(obj))
        if cached is not None:
            return cached
        fn = getattr(obj, "fn", None)  # a Stage referenced from another stage
        if fn is not None and callable(fn) and type(obj).__name__ == "Stage":
            obj = fn
        obj = inspect.unwrap(obj) if callable(obj) else obj
        if not isinstance(obj, (types.FunctionType, type)) or not self._is_local(obj):
            return None
        label = f"{obj.__module__}:{obj.__qualname__}"
        tree = self._function_tree(obj)
        if tree is None:
            digest = hash_struct(["Bytecode", code_struct(getattr(obj, "__code__", None))])
            refs: list[Any] = []
        else:
            digest = hash_struct(["Ast", ast.dump(tree, annotate_fields=False)])
            nodes = list(ast.walk(tree))  # walked once, read three ways
            refs = list(self._references(obj, nodes))
            self._usage[label] = ctx_usage(nodes)
        entry = (label, digest, refs)
        self._objects[id(obj)] = entry
        return entry

    def _describe_constant(self, const: _Constant) -> tuple[str, str, list[Any]] | None:
        label = f"{const.module}:{const.name}"
        refs: list[Any] = []
        try:  # plain data, possibly holding functions or classes (a registry dict): hash it, follow them
            return label, hash_struct(["Value", plain_value(const.value, refs)]), refs
        except TypeError:
            pass
        # any other object: hash the statement that defines it, in whichever project module does
        modules = [const.module] + [
            name for name, module in list(sys.modules.items())
            if name != const.module and getattr(module, const.name, None) is const.value
            and self._is_local_file(getattr(module, "__file__", None))
        ]
        for module_name in modules:
            tree = self.module_tree(module_name)
            for node in tree.body if tree is not None else []:
                if isinstance(node, ast.Assign):
                    targets = node.targets
                elif isinstance(node, ast.AnnAssign):
                    targets = [node.target]
                else:
                    continue
                if any(isinstance(t, ast.Name) and t.id == const.name for t in targets):
                    dump = ast.dump(node, annotate_fields=False)
                    found = self._statement_references(module_name, node)
                    return f"{module_name}:{const.name}", hash_struct(["AstValue", dump]), found
        logger.debug("cannot fingerprint %s: its definition was not found", label)
        return None

    def _statement_references(self, module_name: str, node: ast.AST) -> list[Any]:
        """Project functions and classes a module-level statement names."""
        namespace = vars(sys.modules[module_name])
        found = []
        for child in ast.walk(node):
            if isinstance(child, ast.Name) and isinstance(namespace.get(child.id), (types.FunctionType, type)):
                found.append(namespace[child.id])
        return found

    def _function_tree(self, obj: Any) -> ast.AST | None:
        """The docstring-free AST of a function or class, cut from its module's memoized tree."""
        index = self._definitions(getattr(obj, "__module__", "") or "")
        if index:
            node = find_definition(index, obj)
            if node is not None:
                return ast.Module(body=[node], type_ignores=[])  # type: ignore[list-item]
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError):
            return None
        try:
            tree = ast.parse(textwrap.dedent(source))
        except SyntaxError:  # e.g. a lambda inside an expression
            return None
        return strip_docstrings(tree)

    def _references(self, obj: Any, nodes: list[ast.AST]) -> Iterator[Any]:
        namespace = getattr(obj, "__globals__", None)
        if namespace is None:
            module = sys.modules.get(obj.__module__)
            namespace = vars(module) if module else {}
        bound = {node.id for node in nodes if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
        bound |= {a.arg for node in nodes if isinstance(node, ast.arguments) for a in all_args(node)}
        for node in nodes:
            if isinstance(node, ast.Attribute):
                chain = attribute_chain(node)
                if chain and chain[0] not in bound and chain[0] in namespace:
                    yield from self._resolve_chain(namespace[chain[0]], chain[1:])
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                if node.id in bound or node.id not in namespace or hasattr(builtins, node.id):
                    continue
                value = namespace[node.id]
                if _is_code(value) or hasattr(value, "fn"):
                    yield value
                elif not isinstance(value, types.ModuleType):
                    yield _Constant(obj.__module__, node.id, value)
        closure = getattr(obj, "__closure__", None) or ()
        for name, cell in zip(getattr(getattr(obj, "__code__", None), "co_freevars", ()), closure):
            try:
                yield _Constant(obj.__module__, f"{obj.__qualname__}.<closure>.{name}", cell.cell_contents)
            except ValueError:  # empty cell
                continue

    def _resolve_chain(self, value: Any, chain: list[str]) -> Iterator[Any]:
        for attr in chain:
            if not isinstance(value, (types.ModuleType, type)):
                break
            if isinstance(value, types.ModuleType) and not self._is_local_module(value):
                return
            value = getattr(value, attr, None)
            if value is None:
                return
            if _is_code(value):
                yield value
                return
        if _is_code(value):
            yield value

    def _is_local_module(self, module: types.ModuleType) -> bool:
        """A project module, or a namespace package (no ``__init__.py``) with a folder in the project."""
        filename = getattr(module, "__file__", None)
        if filename:
            return self._is_local_file(filename)
        return any(self._is_local_file(str(Path(folder) / "__init__.py")) for folder in getattr(module, "__path__", ()))

    def _is_local(self, obj: Any) -> bool:
        module = sys.modules.get(getattr(obj, "__module__", "") or "")
        return self._is_local_file(getattr(module, "__file__", None))

    def _is_local_file(self, filename: str | None) -> bool:
        if not filename:
            return False
        known = self._local_files.get(filename)
        if known is None:
            path = Path(filename).resolve()
            known = path.is_relative_to(self.root) and not any(path.is_relative_to(r) for r in self._excluded)
            known = known and "site-packages" not in path.parts
            self._local_files[filename] = known
        return known

    def _definitions(self, module_name: str) -> dict[str, list[ast.AST]]:
        """Every def/class node of a project module by name (built once per module)."""
        index = self._index.get(module_name)
        if index is None:
            index = {}
            tree = self.module_tree(module_name)
            for node in ast.walk(tree) if tree is not None else ():
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    index.setdefault(node.name, []).append(node)
            self._index[module_name] = index
        return index

    def module_tree(self, module_name: str) -> ast.Module | None:
        """The parsed (docstring-free) source of a project-local module, memoized."""
        if module_name not in self._module_trees:
            module = sys.modules.get(module_name)
            tree = None
            if module is not None and self._is_local_file(getattr(module, "__file__", None)):
                try:
                    tree = strip_docstrings(ast.parse(Path(module.__file__).read_text()))  # type: ignore[arg-type]
                except (OSError, SyntaxError):
                    tree = None
            self._module_trees[module_name] = tree  # type: ignore[assignment]
        return self._module_trees[module_name]

    # -- external scripts ------------------------------------------------------------------
    def _walk_script(self, path: Path, parts: dict[str, str]) -> None:
        stack = [path.resolve()]
        seen: set[Path] = set()
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            label = f"script:{relative(current, self.root)}"
            entry = self._scripts.get(current)
            if entry is None:
                try:
                    source = current.read_text()
                except OSError:
                    parts[label] = hash_struct(["Missing", str(current)])
                    continue
                try:
                    tree = ast.parse(source)
                except SyntaxError:
                    entry = (hash_struct(["Source", source]), [])
                else:
                    dump = ast.dump(strip_docstrings(tree), annotate_fields=False)
                    entry = (hash_struct(["Ast", dump]), self._script_imports(tree, current))
                self._scripts[current] = entry
            parts[label] = entry[0]
            stack.extend(entry[1])

    def _script_imports(self, tree: ast.AST, script: Path) -> list[Path]:
        names: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.append(node.module)
                names += [f"{node.module}.{alias.name}" for alias in node.names]
        found: list[Path] = []
        for name in names:
            rel = Path(*name.split("."))
            for base in (script.parent, self.root):
                for candidate in (base / rel.with_suffix(".py"), base / rel / "__init__.py"):
                    if candidate.is_file() and self._is_local_file(str(candidate)):
                        found.append(candidate.resolve())
        return found


@dataclass(frozen=True, eq=False)
class _Constant:
    """A module-level value a stage reads; fingerprinted by value or by its defining statement."""

    module: str
    name: str
    value: Any
