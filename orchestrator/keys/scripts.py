"""External scripts in a stage's key: their normalized source, the project files they import, and
what they use by name of the project's modules (pure but for reading the files)."""

from __future__ import annotations

import ast
import importlib.util
import types
from pathlib import Path
from typing import Protocol

from .codeast import relative, strip_docstrings
from .codewalk import Walk
from .hashing import hash_struct

__all__ = ["ScriptFiles"]


class ProjectCode(Protocol):
    """What the script walk asks of the fingerprinter about the project's modules."""

    def is_project_module_name(self, name: str) -> bool: ...
    def load_module(self, name: str) -> types.ModuleType | None: ...
    def is_local_module(self, module: types.ModuleType) -> bool: ...
    def is_local_file(self, filename: str | None) -> bool: ...


class ScriptFiles:
    """The scripts of one project, each read and parsed once (memoized by path)."""

    def __init__(self, code: ProjectCode, root: Path) -> None:
        self.code = code
        self.root = root
        self._files: dict[Path, tuple[str, list[Path]]] = {}

    def walk(self, path: Path, parts: dict[str, str], walk: Walk | None = None) -> None:
        """The script's whole normalized source, and what it uses of the project modules it imports.

        A project module the script imports by name (``from stages.models import MLP``) counts by
        the names it reads, fingerprinted as stage code is (``MLP`` and what it reaches); one it
        may use in full (``import *``, the module passed as a value), or that cannot be imported
        here, counts as its whole file (``script:stages/models.py``).
        """
        stack = [path.resolve()]
        seen: set[Path] = set()
        if walk is not None:
            whole, by_name = self._uses(path.resolve(), walk)
            stack = whole + stack
            seen |= by_name  # (keyed by the names the script uses: not as whole files)
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            label = f"script:{relative(current, self.root)}"
            entry = self._files.get(current)
            if entry is None:
                try:
                    source = importlib.util.decode_source(current.read_bytes())
                except (OSError, UnicodeDecodeError, SyntaxError):
                    parts[label] = hash_struct(["Missing", str(current)])
                    continue
                try:
                    tree = ast.parse(source)
                except SyntaxError:
                    entry = (hash_struct(["Source", source]), [])
                else:
                    dump = ast.dump(strip_docstrings(tree), annotate_fields=False)
                    entry = (hash_struct(["Ast", dump]), self._imports(tree, current))
                self._files[current] = entry
            parts[label] = entry[0]
            stack.extend(entry[1])

    def _uses(self, script: Path, walk: Walk) -> tuple[list[Path], set[Path]]:
        """Fingerprint the names ``script`` uses of importable project modules.

        Returns the files to take whole, and those of the modules keyed by name.
        """
        from .scriptdeps import used_names

        try:
            tree = ast.parse(importlib.util.decode_source(script.read_bytes()))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            return [], set()
        whole: list[Path] = []
        by_name: set[Path] = set()
        for module_name, names in used_names(tree).items():
            if not names and names is not None:
                continue  # a package on the way to a module (`import a.b`): what of it is used is listed under a.b
            if not self.code.is_project_module_name(module_name) or (script.parent / module_name.split(".")[0]).exists() \
                    and script.parent != self.root:
                continue  # not the project's, or resolved beside the script: the file walk takes it whole
            module = self.code.load_module(module_name)
            if module is None or not self.code.is_local_module(module):
                continue
            values = [getattr(module, name, None) for name in names or ()]
            if names is None or any(v is None or isinstance(v, types.ModuleType) for v in values):
                file = getattr(module, "__file__", None)
                whole += [Path(file).resolve()] if file else []
                continue
            for name in sorted(names or ()):
                walk.reach(getattr(module, name), f"{module_name}:{name}")
            file = getattr(module, "__file__", None)
            by_name |= {Path(file).resolve()} if file else set()
        return whole, by_name - set(whole)

    def _imports(self, tree: ast.AST, script: Path) -> list[Path]:
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
                    if candidate.is_file() and self.code.is_local_file(str(candidate)):
                        found.append(candidate.resolve())
        return found
