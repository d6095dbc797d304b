"""The types a param may be annotated with, and whether a value fits one (pure).

Plain ``int``, ``float``, ``str``, ``bool``, ``list``, ``dict``... and ``list[int]`` or
``tuple[int, ...]``: a wrong element is named (``sizes[1]``), not the whole list. Stage params
are checked against them when bound, dataclass param sets when a builder returns them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["label_of", "type_mismatch"]

_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "tuple": (list, tuple),
}


def label_of(annotation: Any) -> str:
    """The name an annotation is checked by (``float``; a string annotation as written)."""
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")


def _element_type(annotation: Any) -> tuple[str, str] | None:
    """``("list", "int")`` for ``list[int]``, ``tuple[int, ...]`` or their string forms; else None."""
    import re
    import typing

    if isinstance(annotation, str):
        match = re.fullmatch(r"\s*(list|tuple|List|Tuple)\[\s*(\w+)\s*(,\s*\.\.\.\s*)?\]\s*", annotation)
        return (match.group(1).lower(), match.group(2)) if match else None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, tuple) and args and (origin is list or (len(args) == 2 and args[1] is Ellipsis)):
        return origin.__name__, getattr(args[0], "__name__", "")
    return None


def type_mismatch(annotation: Any, value: Any) -> tuple[str, str, Any] | None:
    """Where ``value`` does not fit ``annotation`` (a plain type or ``list[int]``-like one): the place
    (``"[1]"`` for an element, ``""`` for the value), the expected type's name, and what is there instead.
    None when it fits, or when the annotation is not one that is checked."""
    found = _element_type(annotation)
    element = _TYPES.get(found[1]) if found is not None else None
    if found is not None and element is not None and isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            if not _fits(item, element):
                return f"[{index}]", found[1], item
    label = label_of(annotation)
    expected = _TYPES.get(label)
    if expected is not None and not _fits(value, expected):
        return "", label, value
    return None


def _fits(value: Any, expected: tuple[type, ...]) -> bool:
    return not (isinstance(value, bool) and bool not in expected) and isinstance(value, expected)
