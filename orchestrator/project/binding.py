"""Param values bound to a stage: lookup, defaults, types, and the values its key sees (pure).

A node's params come from its param set, else from the stage's defaults; their types are
checked against the stage's annotations (an element of a ``list[int]`` by its index); a
tuple default and the same list from YAML are one value. Params annotated as data get
their content digest (``data:<param>``) from a resolver the caller supplies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import DefinitionError, ParamsError, did_you_mean
from ..keys.fingerprint import CodeFingerprint
from .declaration import Param, Stage
from .params import ParamSet
from .paramtypes import label_of, type_mismatch

__all__ = ["RESERVED_PARAMS", "as_lists", "bind", "bind_aggregate", "check_unknown_keys", "data_keys"]

RESERVED_PARAMS = frozenset({"seed"})  # read by ctx.seed; allowed in every set


def as_lists(value: Any) -> Any:
    """A tuple default and the same list from YAML are one param value (and one key)."""
    if isinstance(value, (list, tuple)):
        return [as_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: as_lists(v) for k, v in value.items()}
    return value


def data_keys(stage: Stage, params: Mapping[str, Any], data: Callable[[Any, str], str] | None) -> dict[str, str]:
    """``data:<param>`` -> the content digest of each param annotated as data."""
    if data is None:
        return {}
    return {f"data:{p.name}": data(params[p.name], p.data.pattern)
            for p in stage.all_params if p.data is not None and params.get(p.name) is not None}



def _check_type(stage: Stage, param: Param, value: Any, param_set: str) -> None:
    found = None if value is None and param.default is None else type_mismatch(param.annotation, value)
    if found is None:
        return
    where, label, bad = found
    if where:  # a wrong element names the element (``sizes[1]``), not the whole list
        raise ParamsError(
            f"param {param.name}{where} of stage {stage.name!r} must be {label}, but param set "
            f"{param_set!r} gives {bad!r} ({type(bad).__name__}). Fix: correct that element in the param file."
        )
    raise ParamsError(
        f"param {param.name!r} of stage {stage.name!r} must be {label}, but param set "
        f"{param_set!r} gives {value!r} ({type(value).__name__}). Fix: --set {param.name}=<{label}> "
        "or correct the param file."
    )


def bind(stage: Stage, param_set: ParamSet) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for param in stage.all_params:
        if param.name in param_set.values:
            value = param_set.values[param.name]
            if callable(value):
                raise ParamsError(
                    f"param {param.name!r} of param set {param_set.name!r} (stage {stage.name!r}) is "
                    f"{getattr(value, '__qualname__', type(value).__name__)!r}, a function or class: params are "
                    "data, and their values are hashed into the key. Fix: make it the param's default in the "
                    "stage (a default function is tracked as code), or pass a name and look the function up "
                    "in a dict in the stage's module."
                )
            _check_type(stage, param, value, param_set.name)
            if label_of(param.annotation) == "float" and type(value) is int:
                value = float(value)  # lr=1 and lr=1.0 are the same param value, and the same key
            values[param.name] = value
        elif not param.required:
            values[param.name] = param.default
        else:
            raise ParamsError(
                f"stage {stage.name!r} takes param {param.name!r}, which param set {param_set.name!r} "
                f"does not define.{did_you_mean(param.name, param_set.values)} Fix: add "
                f"{param.name}: to params: in {param_set.source or 'the param file'}, or --set "
                f"{param.name}=VALUE, or give it a default."
            )
    return values


def bind_aggregate(stage: Stage, sets: Sequence[ParamSet]) -> dict[str, Any]:
    bound = [bind(stage, s) for s in sets]
    for param in stage.all_params:
        distinct = {repr(b[param.name]) for b in bound}
        if len(distinct) > 1:
            raise DefinitionError(
                f"aggregate {stage.name!r} takes param {param.name!r}, which differs across param sets "
                f"({', '.join(sorted(distinct))}). Fix: keep it equal in every set, or read it per set."
            )
    return bound[0]


def check_unknown_keys(
    stages: Mapping[str, Stage], sets: Sequence[ParamSet], fingerprints: Mapping[str, CodeFingerprint]
) -> None:
    if any("params" in fp.ctx_uses for fp in fingerprints.values()):
        return  # some stage reads ctx.params: any key may be meant for it
    known = set(RESERVED_PARAMS) | {p.name for s in stages.values() for p in s.all_params}
    for param_set in sets:
        for key in param_set.values:
            if key not in known and key in param_set.overridden:
                raise ParamsError(
                    f"--set {key}=...: no stage takes a param {key!r}.{did_you_mean(key, known)} "
                    "Fix: correct the name in --set."
                )
            if key not in known:
                raise ParamsError(
                    f"param set {param_set.name!r} ({param_set.source}) defines {key!r}, which no stage "
                    f"takes.{did_you_mean(key, known)} Fix: correct the name, or add the param to a stage."
                )
