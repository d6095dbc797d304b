"""Code fingerprints: what a stage's code *means*, not how its file looks.

A stage's fingerprint covers the normalized syntax tree of its function (docstrings,
comments and formatting dropped) and, transitively, every project-local function, class,
module attribute, closure cell and default it can reach (see :mod:`orchestrator.keys.codewalk`),
plus any external script it launches. What is reached is read from the compiled code, so
it is exact for Python's scopes; every reached value is hashed by a deterministic encoding
of its state, or else its whole module is, and the part's label says so.

The fingerprint keeps one hash per part (``"stages.helpers:normalize"``), so a plan can say
*which* piece of code changed. The installed library (``orchestrator`` itself, anything
under ``site-packages`` or the standard library) is never project code. Reads source files,
but is otherwise pure and memoized per process.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..project.loader import installed_roots, is_project_file
from .codevalues import code_struct
from .codewalk import Walk
from .definitions import ModuleDefinitions, memo_key
from .hashing import hash_bytes, hash_struct
from .scripts import ScriptFiles

logger = logging.getLogger(__name__)

__all__ = ["CodeFingerprint", "DefinitionMemo", "Fingerprinter", "WHOLE_MODULE", "fingerprint_of"]

#: marks the label of a part that hashes a whole module (the conservative fallback)
WHOLE_MODULE = " (whole module: "


class DefinitionMemo(Protocol):
    """Where a fingerprinter keeps definition digests between runs (``orchestrator.store.codedigests``).

    ``get`` must answer None unless it holds a payload put under that very ``key``.
    """

    def get(self, filename: str, key: str) -> Any | None: ...
    def put(self, filename: str, key: str, payload: Any) -> None: ...
    def save(self) -> None: ...


@dataclass(frozen=True)
class CodeFingerprint:
    """The fingerprint of one stage's code.

    Attributes:
        digest: Hash over all parts.
        parts: Hash per piece of code (``module:qualname``, ``script:path``, ``version``).
        ctx_uses: Attributes of ``ctx`` the stage may read (``params``, ``seed``): any project
            code it reaches that reads an attribute of that name counts.
        scripts: External scripts the stage launches (project-relative posix paths).
    """

    digest: str
    parts: dict[str, str]
    ctx_uses: frozenset[str]
    scripts: tuple[str, ...]

    @property
    def conservative(self) -> tuple[str, ...]:
        """Labels of parts where a whole module stands in for a value it could not hash."""
        return tuple(label for label in self.parts if WHOLE_MODULE in label)


class Fingerprinter:
    """Computes and memoizes code fingerprints for one project root."""

    def __init__(self, project_root: Path, memo: DefinitionMemo | None = None) -> None:
        self.root = project_root.resolve()
        self.memo = memo
        self._installed = installed_roots(self.root)
        self._local_files: dict[str, bool] = {}
        self._content: dict[int, tuple[Any, str, tuple[str, ...]]] = {}
        self._scripts = ScriptFiles(self, self.root)
        self._modules: dict[str, tuple[Any, ModuleDefinitions | None]] = {}
        self._sources: dict[str, tuple[Any, str, types.CodeType | None]] = {}
        self._bodies: dict[tuple[str, int], tuple[Any, types.CodeType | None]] = {}
        self._named: dict[str, types.ModuleType | None] = {}

    # -- public ------------------------------------------------------------------------
    def stage(
        self, fn: Any, *, version: Any = None, scripts: tuple[str, ...] = (), extra: tuple[Any, ...] = ()
    ) -> CodeFingerprint:
        """Fingerprint a stage function (and ``extra`` functions such as its setup) with what they reach."""
        walk = Walk(self)
        walk.reach(fn, f"{fn.__module__}:{fn.__qualname__}")
        for other in extra:
            walk.reach(other, f"{getattr(other, '__module__', '?')}:{getattr(other, '__qualname__', '?')}")
        found_scripts = list(scripts) + [s for s in walk.scripts if s not in scripts]
        parts = walk.parts
        for script in found_scripts:
            self._scripts.walk(self.root / script, parts, walk)
        if version is not None:
            parts["version"] = hash_struct(["Version", repr(version)])
        digest = hash_struct(["Code", sorted(parts.items())])
        seen = walk.names | walk.strings
        ctx_uses = frozenset(use for use in ("params", "seed") if use in seen)
        return CodeFingerprint(digest, parts, ctx_uses, tuple(found_scripts))

    def of_stage(self, stage: Any) -> CodeFingerprint:
        """The fingerprint of a declared :class:`~orchestrator.project.declaration.Stage`."""
        return self.stage(stage.fn, version=stage.version, scripts=stage.scripts, extra=tuple(stage.hooks.values()))

    # -- what is project code ------------------------------------------------------------
    def is_local(self, obj: Any) -> bool:
        module = sys.modules.get(getattr(obj, "__module__", "") or "")
        return self.is_local_file(getattr(module, "__file__", None))

    def is_local_module(self, module: types.ModuleType) -> bool:
        """A project module, or a namespace package (no ``__init__.py``) with a folder in the project."""
        filename = getattr(module, "__file__", None)
        if filename:
            return self.is_local_file(filename)
        return any(self.is_local_file(str(Path(folder) / "__init__.py")) for folder in getattr(module, "__path__", ()))

    def is_project_module_name(self, name: str) -> bool:
        """Whether the top-level package of ``name`` lives in the project (without importing it)."""
        top = name.split(".")[0]
        module = sys.modules.get(top)
        if module is not None:
            return self.is_local_module(module)
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return False
        if spec is None:
            return False
        if spec.origin and self.is_local_file(spec.origin):
            return True
        return any(self.is_local_file(str(Path(p) / "__init__.py")) for p in spec.submodule_search_locations or ())

    def module_named(self, text: str) -> types.ModuleType | None:
        """The project module a string constant names (``"stages.config"``), if it names one."""
        if "." not in text or not all(part.isidentifier() for part in text.split(".")):
            return None
        if text not in self._named:
            found = None
            if self.is_project_module_name(text):
                module = self.load_module(text)
                found = module if module is not None and self.is_local_module(module) else None
            self._named[text] = found
        return self._named[text]

    def load_module(self, name: str) -> types.ModuleType | None:
        """A project module by name, imported if the code imports it only when it runs."""
        module = sys.modules.get(name)
        if module is not None:
            return module
        try:
            return importlib.import_module(name)
        except Exception as exc:  # it fails when the stage runs too; the key says so
            logger.debug("cannot import %s for its fingerprint: %s", name, exc)
            return None

    def is_local_file(self, filename: str | None) -> bool:
        """Whether ``filename`` is the project's own code (memoized)."""
        if not filename:
            return False
        known = self._local_files.get(filename)
        if known is None:
            path = Path(filename).resolve()
            known = is_project_file(path, self.root, self._installed)
            self._local_files[filename] = known
        return known

    # -- content -------------------------------------------------------------------------
    def canonical_label(self, obj: Any) -> str | None:
        """``module:qualname`` when that name leads to ``obj`` itself (not a lambda, closure or wrapper)."""
        module_name = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None)
        if not isinstance(module_name, str) or not isinstance(qualname, str) or "<" in qualname:
            return None
        found: Any = sys.modules.get(module_name)
        for attr in qualname.split("."):
            found = getattr(found, attr, None)
        return f"{module_name}:{qualname}" if found is obj else None

    def content(self, obj: Any) -> tuple[str, tuple[str, ...]]:
        """The digest of a function's or class's own code, and the scripts it launches by literal path."""
        cached = self._content.get(id(obj))
        if cached is not None and cached[0] is obj:
            return cached[1], cached[2]
        found = self._definition(obj)
        digest_scripts = found[0].digest(found[1]) if found is not None else None
        if digest_scripts is not None:
            digest, scripts = digest_scripts
        elif isinstance(obj, type):  # made at run time (namedtuple, type(...)): its members are parts
            members = sorted(k for k in vars(obj) if not (k.startswith("__") and k.endswith("__")))
            digest, scripts = hash_struct(["Class", obj.__qualname__, members]), ()
        else:  # a lambda, or code with no source to read: its compiled form
            digest, scripts = hash_struct(["Bytecode", code_struct(obj.__code__, _no_refs, "")]), ()
        self._content[id(obj)] = (obj, digest, scripts)
        return digest, scripts

    def class_body(self, cls: type) -> types.CodeType | None:
        """A class statement compiled from its source: what its body, bases and decorators read.

        A class keeps no code object of its body, yet ``field(default_factory=make)``, a class
        decorator's arguments and attribute expressions read globals; compiling the definition
        again exposes those names to :func:`orchestrator.keys.coderefs.scan`.
        """
        key = ("body", id(cls))
        cached = self._bodies.get(key)
        if cached is not None and cached[0] is cls:
            return cached[1]
        found = self._definition(cls)
        node = found[0].node(found[1]) if found is not None else None
        code = None
        if node is not None:
            tree = ast.Module(body=[node], type_ignores=[])  # type: ignore[list-item]
            try:
                filename = getattr(sys.modules.get(cls.__module__), "__file__", None) or "<class>"
                code = compile(ast.fix_missing_locations(tree), filename, "exec")
            except (SyntaxError, ValueError, TypeError):
                code = None
        self._bodies[key] = (cls, code)
        return code

    def _definition(self, obj: Any) -> tuple[ModuleDefinitions, int] | None:
        """Where ``obj``'s def/class is among its module's definitions, if found."""
        definitions = self.definitions(getattr(obj, "__module__", "") or "")
        index = definitions.find(obj) if definitions is not None else None
        return (definitions, index) if definitions is not None and index is not None else None

    def definitions(self, module_name: str) -> ModuleDefinitions | None:
        """The def/class statements of a project-local module, memoized per module object.

        A module imported afresh (a notebook's second run after an edit, a long-lived worker)
        is a new object, and its source is read again. With a memo, a source read before (the
        same bytes) is not parsed again: its digests come from the memo.
        """
        module = sys.modules.get(module_name)
        known = self._modules.get(module_name)
        if known is None or known[0] is not module:
            found: ModuleDefinitions | None = None
            filename = getattr(module, "__file__", None)
            if module is not None and self.is_local_file(filename):
                try:
                    source = Path(filename).read_bytes()  # type: ignore[arg-type]
                except OSError:
                    source = None
                if source is not None:
                    payload = self.memo.get(filename, memo_key(source)) if self.memo is not None else None  # type: ignore[arg-type]
                    found = (ModuleDefinitions.load(source, payload) if payload is not None
                             else ModuleDefinitions.parse(source))
            known = self._modules[module_name] = (module, found)
        return known[1]

    def module_tree(self, module_name: str) -> ast.Module | None:
        """The parsed (docstring-free) source of a project-local module, memoized per module object."""
        definitions = self.definitions(module_name)
        return definitions.tree if definitions is not None else None

    def module_source(self, module_name: str) -> tuple[str, types.CodeType | None]:
        """A module's whole normalized source as a digest, and its compiled code (to follow what it reads)."""
        module = sys.modules.get(module_name)
        found = self._sources.get(module_name)
        if found is None or found[0] is not module:
            filename = getattr(module, "__file__", None)
            try:
                data = Path(filename).read_bytes() if filename else b""
            except OSError:
                data = b""
            tree = self.module_tree(module_name)
            if tree is not None:
                digest = hash_struct(["Module", ast.dump(tree, annotate_fields=False)])
            else:
                digest = hash_struct(["ModuleBytes", hash_bytes(data)])
            try:
                code = compile(data, filename or "<unknown>", "exec") if data else None
            except (SyntaxError, ValueError):
                code = None
            found = self._sources[module_name] = (module, digest, code)
        return found[1], found[2]

    def save(self) -> None:
        """Hand the digests computed in this process to the memo, and have it write them."""
        if self.memo is None:
            return
        for module, definitions in self._modules.values():
            filename = getattr(module, "__file__", None)
            if definitions is not None and definitions.dirty and filename:
                self.memo.put(filename, definitions.key, definitions.payload())
                definitions.dirty = False
        self.memo.save()


_SHARED: dict[str, Fingerprinter] = {}


def fingerprint_of(stage: Any, project_root: str) -> CodeFingerprint:
    """A stage's fingerprint from a process-wide fingerprinter per project (for workers)."""
    fingerprinter = _SHARED.get(project_root)
    if fingerprinter is None:
        fingerprinter = _SHARED[project_root] = Fingerprinter(Path(project_root or "."))
    return fingerprinter.of_stage(stage)


def _no_refs(value: Any, path: str) -> Any:
    """Constants of compiled code hold no functions; anything else is named by type."""
    return ["extern", getattr(value, "__module__", None), getattr(value, "__qualname__", repr(type(value)))]
