"""One stage's walk over the project code and values it reaches.

Starting from the stage function, every reference the compiler recorded is followed
(:mod:`orchestrator.keys.coderefs`): globals, attribute reads of project modules, imports in
function bodies, closure cells, defaults, ``__wrapped__`` chains, the methods, bases and
attributes of classes, and the code inside data (a registry dict of lambdas). Each piece
becomes one *part* with a unique label:

- ``module:qualname`` for a function or class reachable under that name;
- otherwise the path it was reached by: ``stages.ops:ADD2`` (a closure made by a factory),
  ``stages.ops:OPS['double']`` (a lambda in a dict), ``stages.ops:ADD2.<closure>.n``;
- ``module (whole module: reason)`` where a value has no deterministic encoding, or a
  module is used as a value: the module's normalized source and everything it reads.

Nothing reached is ever dropped: it is hashed, or its module is.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any, Protocol

from ..project.declaration import Stage
from .coderefs import CodeRefs, Import, scan
from .codevalues import Unencodable, encode_value
from .hashing import hash_struct

__all__ = ["Walk"]


class Fingerprinter(Protocol):
    """What the walk asks of :class:`orchestrator.keys.fingerprint.Fingerprinter` (which drives it)."""

    def is_local(self, obj: Any) -> bool: ...
    def is_local_module(self, module: types.ModuleType) -> bool: ...
    def is_project_module_name(self, name: str) -> bool: ...
    def module_named(self, text: str) -> types.ModuleType | None: ...
    def load_module(self, name: str) -> types.ModuleType | None: ...
    def canonical_label(self, obj: Any) -> str | None: ...
    def content(self, obj: Any) -> tuple[str, tuple[str, ...]]: ...
    def class_body(self, cls: type) -> types.CodeType | None: ...
    def module_source(self, module_name: str) -> tuple[str, types.CodeType | None]: ...

#: class attributes that are bookkeeping of the type system, not the class's data
_CLASS_INTERNALS = frozenset({"_abc_impl"})
#: builtins that read a module's globals by a computed name: the whole module is reachable
_DYNAMIC = frozenset({"globals", "eval", "exec"})


class Walk:
    """The parts of one stage's code: ``parts`` (label -> digest), ``names`` and ``strings`` read."""

    def __init__(self, fingerprinter: Fingerprinter) -> None:
        self.fp = fingerprinter
        self.parts: dict[str, str] = {}
        self.names: set[str] = set()
        self.strings: set[str] = set()
        self.scripts: list[str] = []
        self._labels: dict[int, str] = {}  # id of a reached object -> its label
        self._keep: list[Any] = []  # keeps reached objects alive, so their ids stay theirs
        self._modules: set[tuple[str, int]] = set()
        self._wholes: set[str] = set()

    # -- recording -----------------------------------------------------------------------
    def put(self, label: str, digest: str) -> None:
        """Record one part; two different pieces can never share a label."""
        old = self.parts.get(label)
        if old is not None and old != digest:
            raise AssertionError(f"two pieces of code share the fingerprint label {label!r}")
        self.parts[label] = digest

    # -- dispatch ------------------------------------------------------------------------
    def reach(self, value: Any, path: str) -> Any:
        """Fingerprint ``value`` found at ``path``; returns the structure standing for it in data."""
        if isinstance(value, Stage):
            value = value.fn
        known = self._labels.get(id(value))
        if known is not None:
            return ["ref", known]
        if isinstance(value, types.ModuleType):
            if self.fp.is_local_module(value):
                self.whole_module(value.__name__, "used as a value")
            return ["module", value.__name__]
        if isinstance(value, (types.FunctionType, type)):
            if not self.fp.is_local(value):
                return ["extern", getattr(value, "__module__", None), getattr(value, "__qualname__", None)]
            return ["ref", self._code(value, path)]
        if isinstance(value, types.MethodType):
            return ["method", self.reach(value.__func__, path), self.value(value.__self__, f"{path}.__self__")]
        wrapped = _wrapped(value)
        if wrapped is not None and callable(value):  # functools.cache, lru_cache, a wrapping object
            self._remember(value, path)  # the wrapper is library code: the wrapped function takes its name
            return ["wrapper", self.reach(type(value), path), self.reach(wrapped, path)]
        if isinstance(value, (types.BuiltinFunctionType, types.MethodWrapperType, types.WrapperDescriptorType)):
            return ["extern", getattr(value, "__module__", None), getattr(value, "__qualname__", repr(value))]
        return ["ref", self.value(value, path)]

    def _remember(self, value: Any, label: str) -> None:
        self._labels[id(value)] = label
        self._keep.append(value)

    # -- code ----------------------------------------------------------------------------
    def _code(self, obj: Any, path: str) -> str:
        label = self.fp.canonical_label(obj) or path
        self._remember(obj, label)
        digest, scripts = self.fp.content(obj)
        self.put(label, digest)
        self.scripts += [s for s in scripts if s not in self.scripts]
        if isinstance(obj, type):
            self._follow_class(obj, label)
        else:
            self._follow_function(obj, label)
        return label

    def _follow_function(self, fn: types.FunctionType, label: str) -> None:
        code = fn.__code__
        refs = scan(code)
        self.names |= refs.names
        self.strings |= refs.strings
        namespace = fn.__globals__
        module = namespace.get("__name__") or fn.__module__
        self._follow_refs(refs, namespace, module)
        if fn.__defaults__:
            self.value(fn.__defaults__, f"{label}.<defaults>")
        if fn.__kwdefaults__:
            self.value(fn.__kwdefaults__, f"{label}.<kwdefaults>")
        for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell: a name assigned later
                continue
            self.reach(contents, f"{label}.<closure>.{name}")
        wrapped = _wrapped(fn)
        if wrapped is not None:
            self.reach(wrapped, f"{label}.<wrapped>")

    def _follow_refs(self, refs: CodeRefs, namespace: dict[str, Any], module: str) -> None:
        for name in refs.globals:
            if name.startswith("__") and name.endswith("__"):
                continue  # __name__, __file__: where the module is, not what it computes
            if name not in namespace:
                if name in _DYNAMIC and self.fp.is_local_module(sys.modules.get(module) or types.ModuleType("?")):
                    self.whole_module(module, f"code reads its globals by name ({name}())")
                continue  # a builtin, or a name the code defines later
            value = namespace[name]
            if isinstance(value, types.ModuleType):
                self.module(value, refs, bare=name in refs.bare)
            else:
                self.reach(value, f"{module}:{name}")
        for imp in refs.imports:
            self._imported(imp, namespace, refs)
        for text in refs.strings:  # importlib.import_module("stages.config"), a registry by module path
            named = self.fp.module_named(text)
            if named is not None:
                self.whole_module(named.__name__, "named in a string")
        for imp in refs.bare_imports:
            target = self._import_target(imp, namespace)
            if isinstance(target, types.ModuleType):
                self.module(target, refs, bare=True)

    def _follow_class(self, cls: type, label: str) -> None:
        body = self.fp.class_body(cls)
        module = sys.modules.get(cls.__module__)
        if body is not None and module is not None:  # what the class statement reads: decorators, fields
            refs = scan(body)
            self._follow_refs(refs, vars(module), cls.__module__)
        for base in (*cls.__bases__, type(cls)):
            self.reach(base, f"{label}.<base>")
        for name, attr in list(vars(cls).items()):
            if isinstance(attr, (staticmethod, classmethod)):
                attr = attr.__func__
            if isinstance(attr, property):
                for i, accessor in enumerate((attr.fget, attr.fset, attr.fdel)):
                    if accessor is not None:
                        self.reach(accessor, f"{label}.{name}.<{i}>")
                continue
            function = getattr(attr, "func", None)  # functools.cached_property
            if isinstance(function, types.FunctionType) and not callable(attr):
                attr = function
            if isinstance(attr, (types.MemberDescriptorType, types.GetSetDescriptorType)):
                continue  # a __slots__ entry: the class's source declares it
            dunder = name.startswith("__") and name.endswith("__")
            if isinstance(attr, (types.FunctionType, type)) or not (dunder or name in _CLASS_INTERNALS):
                self.reach(attr, f"{label}.{name}")

    # -- modules -------------------------------------------------------------------------
    def module(self, module: types.ModuleType, refs: CodeRefs, *, bare: bool) -> None:
        """A project module the code reads: the attributes it names, or the whole of it if used as a value."""
        if not self.fp.is_local_module(module):
            return
        if bare:
            self.whole_module(module.__name__, "used as a value")
            return
        visit = (module.__name__, id(refs.names))
        if visit in self._modules:
            return
        self._modules.add(visit)
        namespace = vars(module)
        for name in sorted(refs.names):
            if name in namespace:
                value = namespace[name]
                if isinstance(value, types.ModuleType):
                    self.module(value, refs, bare=False)
                else:
                    self.reach(value, f"{module.__name__}:{name}")

    def whole_module(self, name: str, reason: str) -> None:
        """The conservative fallback: a module's whole normalized source, and everything its code reads."""
        if name in self._wholes:
            return
        self._wholes.add(name)
        module = sys.modules.get(name)
        digest, code = self.fp.module_source(name)
        self.put(f"{name} (whole module: {reason})", digest)
        if module is None or code is None:
            return
        refs = scan(code)
        self._follow_refs(refs, vars(module), name)

    def _imported(self, imp: Import, namespace: dict[str, Any], refs: CodeRefs) -> None:
        absolute = _absolute(imp, namespace)
        if absolute is None or not self.fp.is_project_module_name(absolute):
            return
        module = self.fp.load_module(absolute)
        if module is None:
            self.put(f"{absolute} (could not be imported)", hash_struct(["Unimportable", absolute]))
            return
        parts = absolute.split(".")
        for i in range(1, len(parts) + 1):  # `import a.b.c` binds a; a.b.c.X reads through each
            found = sys.modules.get(".".join(parts[:i]))
            if found is not None:
                self.module(found, refs, bare=False)
        for name in imp.fromlist:
            value = getattr(module, name, None)
            if value is None:
                value = self.fp.load_module(f"{absolute}.{name}")
            if isinstance(value, types.ModuleType):
                self.module(value, refs, bare=False)
            elif value is not None:
                self.reach(value, f"{absolute}:{name}")

    def _import_target(self, imp: Import, namespace: dict[str, Any]) -> Any:
        absolute = _absolute(imp, namespace)
        if absolute is None or not self.fp.is_project_module_name(absolute):
            return None
        module = self.fp.load_module(absolute)
        base = module if imp.fromlist else sys.modules.get(absolute.split(".")[0])
        return getattr(base, imp.attr, None) if imp.attr else base

    # -- values --------------------------------------------------------------------------
    def value(self, value: Any, path: str) -> str:
        """Record a data value as one part (by its deterministic encoding); returns its label."""
        if not isinstance(value, (type(None), bool, int, float, str, bytes)):
            self._remember(value, path)
        try:
            encoded = encode_value(value, path, self.reach)
        except (Unencodable, RecursionError, Exception) as exc:  # any failure to encode: never a traceback
            if not isinstance(exc, Unencodable):
                exc = Unencodable(f"{type(exc).__name__} while encoding it")
            module, _, name = path.partition(":")
            self.whole_module(module, f"{name} could not be hashed: {exc}")
            return path
        self.put(path, hash_struct(["Value", encoded]))
        return path


def _wrapped(value: Any) -> Any:
    try:
        return value.__dict__.get("__wrapped__") if hasattr(value, "__dict__") else getattr(value, "__wrapped__", None)
    except Exception:  # an object whose attribute access fails
        return None


def _absolute(imp: Import, namespace: dict[str, Any]) -> str | None:
    if not imp.level:
        return imp.name
    package = namespace.get("__package__") or ""
    try:
        return importlib.util.resolve_name("." * imp.level + imp.name, package)
    except (ImportError, ValueError):
        return None

