"""Reading param files: YAML, TOML and Python builders, into plain documents (the only I/O of params).

- **YAML** (``.yaml``/``.yml``): safe loading, ``1e-3`` read as a float, a key given twice in one
  mapping is an error naming both lines (YAML would keep the last silently), and ``!unset``
  removes a key a parent file (``extends:``) set.
- **TOML** (``.toml``): the same layout as tables (``[params]``, ``[grid]``, ``[[sets]]``); since TOML
  has no tags, the string ``"!unset"`` removes an inherited key.
- **Python** (``.py``): ``get_params()`` returns a list of dicts, dataclasses or pydantic models
  (converted to dicts, their types checked by the model itself).

Every file must be UTF-8: anything else is an error naming the file and the byte.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import typing
from pathlib import Path
from typing import Any

from ..errors import ParamsError, did_you_mean
from .paramtypes import type_mismatch

__all__ = ["SUFFIXES", "TOP_LEVEL", "UNSET", "python_sets", "read_document", "yaml_value"]

TOP_LEVEL = ("extends", "description", "stages", "targets", "params", "sets", "grid", "search")
SUFFIXES = (".yaml", ".yml", ".toml", ".py")


class _Unset:
    """``!unset``: remove this key from what ``extends:`` brought in."""

    def __repr__(self) -> str:
        return "!unset"


UNSET = _Unset()


def _loader() -> Any:
    """A safe YAML loader: ``1e-3`` is a float, a duplicate key is an error, ``!unset`` removes a key."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:  # an unhashable key: the base class says so
                    break
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        f"in the mapping at line {node.start_mark.line + 1}",
                        node.start_mark,
                        f"key {key!r} appears twice (lines {first.line + 1} and {key_node.start_mark.line + 1}); "
                        "YAML would keep the last silently. Fix: keep one of them",
                        key_node.start_mark,
                    )
            return super().construct_mapping(node, deep=deep)

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    Loader.add_constructor("!unset", lambda loader, node: UNSET)
    return Loader


def yaml_value(text: str) -> Any:
    """Parse YAML text with the param-file loader (``--set`` values too)."""
    import yaml

    return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass


def _text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ParamsError(
            f"{path}: not UTF-8 text: byte {exc.start} (line {line}) is {data[exc.start:exc.start + 1]!r}. "
            "Param files must be UTF-8. Fix: save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
        ) from None


def read_document(path: Path) -> dict[str, Any]:
    """A YAML or TOML param file as a checked mapping of the top-level keys."""
    doc = _read_toml(path) if path.suffix == ".toml" else _read_yaml(path)
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ParamsError(f"{path}: a param file must be a mapping of {', '.join(TOP_LEVEL)}; got {type(doc).__name__}.")
    for key in doc:
        if key not in TOP_LEVEL:
            raise ParamsError(
                f"{path}: unknown top-level key {key!r}.{did_you_mean(str(key), TOP_LEVEL)} "
                f"Allowed: {', '.join(TOP_LEVEL)}; param values go under params:."
            )
    for key in ("params", "grid"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise ParamsError(f"{path}: {key}: must be a mapping of name: value, got {type(doc[key]).__name__}.")
    return doc


def _read_yaml(path: Path) -> Any:
    import yaml

    text = _text(path)
    try:
        return yaml_value(text)
    except RecursionError:
        raise ParamsError(f"{path}: params are nested deeper than can be read. Fix: flatten the nesting "
                          "(a few levels of mappings are plenty).") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        if "appears twice" in str(exc.problem):
            raise ParamsError(f"{where}: {exc.problem}.") from None
        raise ParamsError(f"{where}: malformed YAML: {exc.problem}. Fix the file at that line.") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: malformed YAML: {exc}") from exc


def _read_toml(path: Path) -> Any:
    import tomllib

    try:
        doc = tomllib.loads(_text(path))
    except RecursionError:
        raise ParamsError(f"{path}: params are nested deeper than can be read. Fix: flatten the nesting.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ParamsError(f"{path}: malformed TOML: {exc}. Fix the file at that line.") from None
    return _unset_strings(doc)


def _unset_strings(value: Any) -> Any:
    if value == "!unset":
        return UNSET
    if isinstance(value, dict):
        return {k: _unset_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unset_strings(v) for v in value]
    return value


def python_sets(path: Path) -> tuple[list[dict[str, Any]], list[Path]]:
    """The sets a Python param file's ``get_params()`` returns, as dicts (with names), and the files it read.

    The files (a TOML config under ``configs/`` that the builder loads) go into the run's
    source snapshot beside the param file.
    """
    from .readwatch import watching

    with watching() as watch:
        sets = _build_sets(path)
    root = path.resolve().parent.parent
    read = [Path(p) if Path(p).is_absolute() else root / p for p in watch.undeclared((), root)]
    return sets, [p for p in read if p.resolve() != path.resolve()]


def _build_sets(path: Path) -> list[dict[str, Any]]:
    spec = importlib.util.spec_from_file_location(f"_orchestrator_params_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ParamsError(f"{path}: cannot be imported.")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ParamsError(f"{path}: importing it raised {type(exc).__name__}: {exc}") from exc
    get_params = getattr(module, "get_params", None)
    if not callable(get_params):
        raise ParamsError(f"{path}: defines no get_params(). Fix: def get_params() -> list[dict]: ...")
    try:
        sets = get_params()
    except Exception as exc:  # a pydantic ValidationError names the field; so does a dataclass TypeError
        raise ParamsError(f"{path}: get_params() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(sets, (list, tuple)):
        raise ParamsError(f"{path}: get_params() must return a list of dicts, got {type(sets).__name__}.")
    found = []
    for index, entry in enumerate(sets):
        values = _as_dict(entry)
        if values is None:
            raise ParamsError(f"{path}: get_params()[{index}] is a {type(entry).__name__}; each set must be a "
                              "dict, a dataclass or a pydantic model.")
        _check_fields(entry, f"{path}: get_params()[{index}]")
        found.append({**values, "name": str(values.get("name", f"{path.stem}[{index}]"))})
    return found


def _as_dict(entry: Any) -> dict[str, Any] | None:
    if isinstance(entry, dict):
        return dict(entry)
    if dataclasses.is_dataclass(entry) and not isinstance(entry, type):
        return dataclasses.asdict(entry)
    dump = getattr(entry, "model_dump", None)  # pydantic v2
    if callable(dump):
        return dict(dump())
    return None


def _check_fields(entry: Any, where: str) -> None:
    """A dataclass's fields against their annotations (pydantic models check themselves when built)."""
    if not dataclasses.is_dataclass(entry) or isinstance(entry, type):
        return
    try:
        hints = typing.get_type_hints(type(entry))
    except Exception:  # noqa: BLE001 - an annotation that does not evaluate: its string form is checked
        hints = {}
    for field in dataclasses.fields(entry):
        value = getattr(entry, field.name)
        if value is None and field.default is None:
            continue
        found = type_mismatch(hints.get(field.name, field.type), value)
        if found is not None:
            place, label, bad = found
            raise ParamsError(f"{where} ({type(entry).__name__}): field {field.name}{place} must be {label}, "
                              f"but it is {bad!r} ({type(bad).__name__}). Fix: correct it in get_params().")
