"""What a compiled function refers to, read from its bytecode (pure).

The compiler already resolved every name of a function into a scope: locals and
arguments live in ``co_varnames``, closure variables in ``co_freevars``, and only globals,
attributes and imported modules reach ``co_names``. Reading the instructions (the way
cloudpickle finds a function's globals) therefore gives scope-exact answers that a
guess over the syntax tree cannot: a parameter named like a helper never hides it, a
helper named like a builtin is still a global, and an ``import`` inside the body is seen.

:func:`scan` walks a code object and every code object nested in it (inner functions,
lambdas, comprehensions, class bodies) and returns a :class:`CodeRefs`.
"""

from __future__ import annotations

import dis
import types
from dataclasses import dataclass
from typing import Any

__all__ = ["CodeRefs", "Import", "scan"]

_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL", "STORE_NAME"})
_ATTR_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_TRANSPARENT = frozenset({"EXTENDED_ARG", "CACHE", "NOP"})
_STORES = frozenset({"STORE_FAST", "STORE_NAME", "STORE_GLOBAL", "STORE_DEREF"})


@dataclass(frozen=True)
class Import:
    """An ``import`` executed by the code, and which value of it a name was bound to.

    ``import a.b`` binds the top package ``a`` (``fromlist`` empty); ``from .m import x``
    (``level`` 1, ``fromlist`` ``("x",)``) binds ``m.x``, named by ``attr``.
    """

    name: str
    level: int
    fromlist: tuple[str, ...]
    attr: str = ""


@dataclass(frozen=True)
class CodeRefs:
    """The names a code object (and the code nested in it) can reach.

    Attributes:
        globals: Global names loaded or stored, in order of first use.
        bare: Globals used as values (passed, returned, stored), not only as the head of an
            attribute chain: a module used so is reachable in full.
        bare_imports: Imports whose bound name is used as a value.
        imports: Imports executed inside the code.
        names: Every name the compiler put in ``co_names`` (globals, attributes, imports):
            the attribute names a reached module may be read by.
        strings: String constants (``getattr(ctx, "seed")`` reads by string).
        consts: Non-code constants, for code hashed from its bytecode.
    """

    globals: tuple[str, ...]
    bare: frozenset[str]
    bare_imports: tuple[Import, ...]
    imports: tuple[Import, ...]
    names: frozenset[str]
    strings: frozenset[str]


_MEMO: dict[types.CodeType, CodeRefs] = {}


def scan(code: types.CodeType) -> CodeRefs:
    """The references of ``code`` and of every code object nested in it (memoized)."""
    found = _MEMO.get(code)
    if found is None:
        found = _MEMO[code] = _scan_all(code)
    return found


def _scan_all(code: types.CodeType) -> CodeRefs:
    globals_: dict[str, None] = {}
    bare: set[str] = set()
    bare_imports: list[Import] = []
    imports: list[Import] = []
    names: set[str] = set()
    strings: set[str] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        names.update(current.co_names)
        for const in current.co_consts:
            if isinstance(const, types.CodeType):
                stack.append(const)
            elif isinstance(const, str):
                strings.add(const)
        if current.co_names:  # (no names: no global, import or attribute to find; most small stages)
            _scan_one(current, globals_, bare, bare_imports, imports)
    return CodeRefs(tuple(globals_), frozenset(bare), tuple(bare_imports), tuple(imports),
                    frozenset(names), frozenset(strings))


def _scan_one(code: types.CodeType, globals_: dict[str, None], bare: set[str],
              bare_imports: list[Import], imports: list[Import]) -> None:
    """One code object's instructions: globals, imports and which of them are used as values."""
    bound: dict[str, Import] = {}  # local names bound by an import statement
    head: Any = None  # ("global", name) or ("import", Import): a value just loaded
    pending: Import | None = None  # the import statement being executed
    attr = ""
    consts: list[Any] = []  # the last two constants loaded (an import's level and fromlist)
    prev = ""
    for ins in dis.get_instructions(code):
        op = ins.opname
        if op in _TRANSPARENT:
            continue
        if head is not None and op not in _ATTR_LOADS:
            _close(head, bare, bare_imports)
        head = None
        if op in _GLOBAL_LOADS:
            globals_.setdefault(ins.argval, None)
            if op in ("LOAD_GLOBAL", "LOAD_NAME"):
                head = ("global", ins.argval)
        elif op == "LOAD_CONST":
            consts = [*consts[-1:], ins.argval]
        elif op == "IMPORT_NAME":
            level, fromlist = (consts + [0, None])[:2] if len(consts) < 2 else consts
            pending = Import(ins.argval, int(level or 0), tuple(fromlist or ()))
            imports.append(pending)
            attr = ""
        elif op == "IMPORT_FROM":
            attr = ins.argval
        elif op in _STORES and pending is not None and prev in ("IMPORT_NAME", "IMPORT_FROM"):
            bound[ins.argval] = Import(pending.name, pending.level, pending.fromlist, attr if prev == "IMPORT_FROM" else "")
        elif (op.startswith("LOAD_FAST") or op in ("LOAD_DEREF", "LOAD_CLOSURE")) and ins.argval in bound:
            head = ("import", bound[ins.argval])
        prev = op
    if head is not None:
        _close(head, bare, bare_imports)


def _close(head: Any, bare: set[str], bare_imports: list[Import]) -> None:
    """A loaded value was used other than by reading an attribute of it."""
    kind, what = head
    if kind == "global":
        bare.add(what)
    elif what not in bare_imports:
        bare_imports.append(what)
