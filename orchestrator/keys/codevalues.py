"""Deterministic encodings of the values code reads: module constants, closure cells, defaults (pure).

A value a stage reads is part of its code: editing ``FACTOR = 2`` to ``3`` must change the
key exactly as editing the function would. :func:`encode_value` turns a value into a
structure for :func:`~orchestrator.keys.hashing.hash_struct` that is equal for equal values in
any process:

- plain data by value; lists, tuples and dicts **in their order** (iterating a reordered
  dict constant changes a result), sets and frozensets sorted by their items' encodings;
- numpy arrays by dtype, shape and bytes; enums by class and name;
- functions, classes and modules by a reference the caller resolves (``refer``), so the
  code inside a registry dict is fingerprinted as code;
- any other object (instances, dataclasses, ``Fraction``, ``partial``, compiled patterns)
  by its pickle reduction (``__reduce_ex__(4)``): constructor, arguments and state.

A value that has no such encoding (a lock, an open file, a generator, something that
fakes its reduction) raises :class:`Unencodable`; the fingerprinter then falls back to the
whole module that defines it, and says so.
"""

from __future__ import annotations

import copyreg
import enum
import sys
import types
from collections.abc import Callable
from typing import Any

from .hashing import hash_bytes, hash_struct

__all__ = ["Unencodable", "encode_value", "code_struct"]

SIMPLE = (type(None), bool, int, float, str, bytes)
BUDGET = 200_000  # encoded nodes per value before it counts as too big to encode
_CODE_KINDS = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type, types.ModuleType)


class Unencodable(Exception):
    """A value with no deterministic encoding; ``str()`` says why."""


Refer = Callable[[Any, str], Any]  # (function/class/module, path) -> the structure that stands for it


def encode_value(value: Any, path: str, refer: Refer) -> Any:
    """The deterministic structure of ``value``, found at ``path`` (used to name nested code).

    Raises:
        Unencodable: ``value`` (or something inside it) has no deterministic encoding.
    """
    return _Encoder(refer).encode(value, path)


class _Encoder:
    def __init__(self, refer: Refer) -> None:
        self.refer = refer
        self.budget = BUDGET
        self.active: dict[int, int] = {}  # ids of the containers being encoded -> depth (cycles)

    def encode(self, value: Any, path: str) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise Unencodable("too large to encode")
        if isinstance(value, SIMPLE):
            return value
        if isinstance(value, complex):
            return ["complex", value.real, value.imag]
        if isinstance(value, _CODE_KINDS) or _is_wrapper(value):
            return self.refer(value, path)
        if isinstance(value, enum.Enum):
            return ["enum", self.refer(type(value), path), value.name]
        marker = id(value)
        if marker in self.active:
            return ["cycle", len(self.active) - self.active[marker]]
        self.active[marker] = len(self.active)
        try:
            return self._container(value, path)
        finally:
            del self.active[marker]

    def _container(self, value: Any, path: str) -> Any:
        kind = type(value)
        if kind in (list, tuple):
            return [kind.__name__, [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]]
        if kind is dict:
            return ["dict", self._items(value, path)]
        if kind in (set, frozenset):
            items = [self.encode(v, f"{path}{{}}") for v in value]
            return [kind.__name__, sorted(items, key=hash_struct)]
        numpy = sys.modules.get("numpy")
        if numpy is not None and isinstance(value, numpy.ndarray) and value.dtype != object:
            data = numpy.ascontiguousarray(value)
            return ["ndarray", data.dtype.str, list(data.shape), hash_bytes(data.view(numpy.uint8).reshape(-1).data)
                    if data.size else ""]
        return self._reduced(value, path)

    def _items(self, mapping: Any, path: str) -> list[Any]:
        return [[self.encode(k, f"{path}{{key}}"), self.encode(v, f"{path}[{k!r}]")] for k, v in mapping.items()]

    def _reduced(self, value: Any, path: str) -> Any:
        """Any other object, by how pickle would rebuild it."""
        try:
            reducer = copyreg.dispatch_table.get(type(value))  # how pickle does it: re.Pattern registers one
            reduced = reducer(value) if reducer is not None else value.__reduce_ex__(4)
        except Exception as exc:  # a lock, a file, a generator, a C object without pickle support
            raise Unencodable(f"{type(value).__name__} cannot be pickled ({exc})") from None
        if isinstance(reduced, str):  # a global, pickled by name
            return ["global", type(value).__module__, reduced]
        if not isinstance(reduced, tuple) or len(reduced) < 2:
            raise Unencodable(f"{type(value).__name__} has no usable pickle reduction")
        rebuild, args, *rest = reduced
        out = ["object", self.refer(type(value), path), self.refer(rebuild, path), self.encode(args, path)]
        state = rest[0] if rest else None
        if isinstance(state, dict) and type(state) is dict:
            out.append(["state", self._items(state, path)])
        else:
            out.append(self.encode(state, path))
        for extra in rest[1:3]:  # list items and dict items, as iterators
            out.append(None if extra is None else self.encode(list(extra), path))
        return out


def _is_wrapper(value: Any) -> bool:
    return callable(value) and not isinstance(value, type) and _has_wrapped(value)


def _has_wrapped(value: Any) -> bool:
    try:
        return getattr(value, "__wrapped__", None) is not None
    except Exception:  # an object whose attribute access fails or fakes everything
        return False


def code_struct(code: types.CodeType, refer: Refer, path: str) -> Any:
    """Compiled code as a deterministic structure: for functions with no source to read (lambdas)."""
    consts = [code_struct(c, refer, path) if isinstance(c, types.CodeType) else encode_value(c, path, refer)
              for c in code.co_consts]
    return ["Code", code.co_code, consts, list(code.co_names), list(code.co_varnames), code.co_argcount,
            code.co_kwonlyargcount, code.co_flags]
