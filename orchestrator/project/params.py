"""Param files: ``params/NAME.yaml``, ``.toml`` or ``.py`` resolved into named param sets.

YAML layout::

    extends: base            # deep-merged underneath this file; chains allowed, cycles rejected
    description: text        # optional
    stages: [stages.digits]  # modules to import (default: the project's stages/ package)
    targets: [leaderboard]   # artifacts to produce (default: every sink)
    params: {lr: 0.01}       # values shared by every set
    sets:                    # named variants (a list of {name: ..., ...} or a mapping name -> values)
      - {name: small, hidden: 32}
    grid: {lr: [0.01, 0.1]}  # cartesian sweep; each combination is a set "small[lr=0.01]"
    search: {space: ...}     # hyperparameter search: each trial is a set (orchestrator.project.searchspace)

A Python param file defines ``get_params() -> list[dict]`` (each dict may carry ``name``).
``--set key=value`` overrides (YAML-typed, dotted keys into nested dicts) apply to every set.
Reads files; everything after reading is pure.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ParamsError, did_you_mean
from .paramfiles import (
    SUFFIXES,
    UNSET,
    python_sets,
    read_document,
    yaml_value,
)
from .searchspace import Search, parse_search

__all__ = ["Experiment", "ParamSet", "load_experiment", "parse_override", "apply_override"]



@dataclass(frozen=True)
class ParamSet:
    """One named set of param values; the unit a stage runs for."""

    name: str
    values: Mapping[str, Any]
    source: str = ""
    overridden: frozenset[str] = frozenset()  # top-level keys set by --set / overrides
    parent: str = ""  # the param file its file extends: a set with no result yet is explained against it


@dataclass(frozen=True)
class Experiment:
    """Everything ``experiment run NAMES...`` resolved from the param files."""

    names: tuple[str, ...]
    sets: tuple[ParamSet, ...]
    stage_modules: tuple[str, ...] | None
    targets: tuple[str, ...] | None
    description: str
    files: tuple[Path, ...]
    overrides: tuple[str, ...] = ()
    read_files: tuple[Path, ...] = ()  # files a Python param file read (its configs)
    search: Search | None = None  # a param file with a search: block (its trials are the sets)

    def set_named(self, name: str) -> ParamSet:
        """Return the param set called ``name`` or raise a ParamsError with suggestions."""
        for param_set in self.sets:
            if param_set.name == name:
                return param_set
        names = [s.name for s in self.sets]
        raise ParamsError(
            f"no param set named {name!r} in {', '.join(self.names)}.{did_you_mean(name, names)} "
            f"Known sets: {', '.join(names)}."
        )


def available(params_dir: Path) -> list[str]:
    """Names of the param files in ``params_dir``."""
    if not params_dir.is_dir():
        return []
    return sorted({p.stem for p in params_dir.iterdir() if p.suffix in SUFFIXES})


def load_experiment(
    params_dir: Path, names: Sequence[str], overrides: Sequence[str] | Mapping[str, Any] = ()
) -> Experiment:
    """Load and resolve the named param files, then apply overrides to every set.

    ``overrides`` are ``--set`` texts (``"lr=0.1"``, YAML-typed) or a mapping of dotted
    keys to values.

    Raises:
        ParamsError: unknown file, malformed YAML, bad structure, ``extends`` cycle,
            duplicate set names or a bad override.
    """
    if not names:
        raise ParamsError("no param set named. Fix: experiment run NAME (one of the files in params/).")
    if isinstance(overrides, Mapping):
        parsed = [(str(k), v) for k, v in overrides.items()]
        override_texts = tuple(f"{k}={_override_text(v)}" for k, v in parsed)
    else:
        parsed = [parse_override(text) for text in overrides]
        override_texts = tuple(overrides)
    sets: list[ParamSet] = []
    modules: list[str] = []
    targets: list[str] = []
    descriptions: list[str] = []
    files: list[Path] = []
    read_files: list[Path] = []
    saw_modules = saw_targets = False
    search: Search | None = None
    for name in names:
        path = _find(params_dir, name)
        files.append(path)
        parent: Any = None
        if path.suffix == ".py":
            built, read = python_sets(path)
            doc: dict[str, Any] = {"sets": built}
            read_files += [f for f in read if f not in read_files]  # configs it loads: in the source snapshot
        else:
            parent = read_document(path).get("extends")
            doc = _without_unset(_resolve_yaml(params_dir, name, chain=()))
        if doc.get("stages") is not None:
            saw_modules = True
            modules += [m for m in _str_list(doc["stages"], "stages", path) if m not in modules]
        if doc.get("targets") is not None:
            saw_targets = True
            targets += [t for t in _str_list(doc["targets"], "targets", path) if t not in targets]
        if doc.get("description"):
            descriptions.append(str(doc["description"]))
        grid_keys = set((doc.get("grid") or {}) if path.suffix != ".py" else ())
        for key, _ in parsed:
            if key in grid_keys:
                raise ParamsError(
                    f"--set {key}=...: {key} is a grid dimension of {path.name}; overriding it would make "
                    f"every grid set identical. Fix: drop the --set, or run a param file without that grid."
                )
        overridden = frozenset(key.split(".")[0] for key, _ in parsed)
        if doc.get("search") is not None:
            search = _search(name, doc, path, parsed, overridden, names)
            continue
        for set_name, values in _expand(name, doc, path):
            for key, value in parsed:
                values = apply_override(values, key, value, where=f"param set {set_name!r}")
            sets.append(ParamSet(set_name, values, source=str(path), overridden=overridden,
                                 parent=parent if isinstance(parent, str) else ""))
    seen: dict[str, str] = {}
    for param_set in sets:
        if param_set.name in seen:
            raise ParamsError(
                f"param set name {param_set.name!r} appears twice ({seen[param_set.name]} and "
                f"{param_set.source}). Fix: give each set in sets: a unique name."
            )
        seen[param_set.name] = param_set.source
    return Experiment(
        names=tuple(names),
        sets=tuple(sets),
        stage_modules=tuple(modules) if saw_modules else None,
        targets=tuple(targets) if saw_targets else None,
        description="; ".join(descriptions),
        files=tuple(files),
        overrides=override_texts,
        read_files=tuple(read_files),
        search=search,
    )


def _search(name: str, doc: Mapping[str, Any], path: Path, parsed: Sequence[tuple[str, Any]],
            overridden: frozenset[str], names: Sequence[str]) -> Search:
    """The search a param file declares: its space, and the fixed params every trial starts from."""
    if len(names) > 1:
        raise ParamsError(f"{path.name} holds a search: run it alone. Fix: experiment run {name}.")
    if doc.get("sets") or doc.get("grid"):
        raise ParamsError(f"{path}: search: cannot be combined with sets: or grid: (each trial is a set). "
                          "Fix: move them to a param file of their own, or search over those params too.")
    spec = parse_search(doc["search"], str(path))
    values = dict(doc.get("params") or {})
    for key, value in parsed:
        if key in spec.names:
            raise ParamsError(f"--set {key}=...: {key} is searched by {path.name}. Fix: drop the --set, or "
                              f"remove {key} from search: space:.")
        values = apply_override(values, key, value, where=f"search {name!r}")
    return Search(name, spec, values, str(path), overridden)


def _find(params_dir: Path, name: str) -> Path:
    if "/" in name or "\\" in name or name.startswith("."):
        raise ParamsError(f"param set name {name!r} must be a file name in {params_dir}, not a path.")
    for suffix in SUFFIXES:
        path = params_dir / f"{name}{suffix}"
        if path.is_file():
            return path
    known = available(params_dir)
    raise ParamsError(
        f"no param file {name!r} in {params_dir}.{did_you_mean(name, known)} "
        f"Available: {', '.join(known) or 'none'}. Fix: create params/{name}.yaml or pick one of those."
    )


def _resolve_yaml(params_dir: Path, name: str, chain: tuple[str, ...]) -> dict[str, Any]:
    if name in chain:
        raise ParamsError(
            f"extends cycle: {' -> '.join((*chain, name))}. Fix: remove one of these extends: lines."
        )
    path = _find(params_dir, name)
    if path.suffix == ".py":
        raise ParamsError(f"{name!r} is a Python param file; extends: works between YAML and TOML files only.")
    doc = read_document(path)
    parent = doc.pop("extends", None)
    if parent is None:
        return doc
    if not isinstance(parent, str):
        raise ParamsError(f"{path}: extends: must name one param file, got {parent!r}.")
    return deep_merge(_resolve_yaml(params_dir, parent, (*chain, name)), doc)


def _without_unset(value: Any) -> Any:
    """Drop the ``!unset`` markers left where nothing was inherited to remove."""
    if isinstance(value, dict):
        return {k: _without_unset(v) for k, v in value.items() if v is not UNSET}
    return value


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``top`` over ``base``: nested mappings merge, everything else is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in top.items():
        if value is UNSET:  # `key: !unset` removes what the parent set
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _expand(name: str, doc: Mapping[str, Any], path: Path) -> list[tuple[str, dict[str, Any]]]:
    shared = dict(doc.get("params") or {})
    variants = _variants(doc.get("sets"), path) or [(name, {})]
    grid = doc.get("grid") or {}
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ParamsError(
                f"{path}: grid: {key} must be a non-empty list of values, got {values!r}. "
                f"Fix: {key}: [{values!r}]"
            )
    combos = list(itertools.product(*grid.values())) if grid else [()]
    result = []
    for variant_name, variant in variants:
        base = deep_merge(shared, variant)
        for combo in combos:
            values = base
            for key, value in zip(grid, combo):
                values = apply_override(values, str(key), value, where=f"{path} grid")
            label = variant_name
            if grid:
                label += "[" + ",".join(f"{k}={_fmt(v)}" for k, v in zip(grid, combo)) + "]"
            result.append((label, values))
    return result


def _variants(sets: Any, path: Path) -> list[tuple[str, dict[str, Any]]]:
    if sets is None:
        return []
    if isinstance(sets, dict):
        items = []
        for key, values in sets.items():
            if values is not None and not isinstance(values, dict):
                raise ParamsError(f"{path}: sets: {key} must map to a mapping of params, got {values!r}.")
            items.append((str(key), dict(values or {})))
        return items
    if not isinstance(sets, list):
        raise ParamsError(f"{path}: sets: must be a list of {{name: ..., param: value}} mappings.")
    items = []
    for index, entry in enumerate(sets):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ParamsError(
                f"{path}: sets[{index}] must be a mapping with a string name:, got {entry!r}. "
                "Fix: - {name: small, hidden: 32}"
            )
        values = dict(entry)
        items.append((values.pop("name"), values))
    return items


def _str_list(value: Any, key: str, path: Path) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ParamsError(f"{path}: {key}: must be a list of names, got {value!r}.")
    return list(value)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def _override_text(value: Any) -> str:
    """A value written so that ``--set`` reads it back as the same value."""
    import json

    return value if isinstance(value, str) and parse_override(f"x={value}")[1] == value else json.dumps(value)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` (value YAML-typed: ``0.1`` is a float, ``[1, 2]`` a list)."""
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ParamsError(f"--set {text!r}: expected KEY=VALUE with a dotted KEY, e.g. --set lr=0.01.")
    try:
        value = yaml_value(raw) if raw.strip() else ""
    except RecursionError:
        raise ParamsError(f"--set {key}=...: the value is nested deeper than can be read. Fix: flatten it.") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"--set {text!r}: the value is not valid YAML ({exc}). Quote it: --set {key}='{raw}'") from exc
    return key, value


def apply_override(values: Mapping[str, Any], key: str, value: Any, *, where: str) -> dict[str, Any]:
    """Return a copy of ``values`` with the dotted ``key`` set to ``value``."""
    result = copy.deepcopy(dict(values))
    parts = key.split(".")
    node: dict[str, Any] = result
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise ParamsError(
                f"{where}: cannot set {key!r}: {prefix!r} is {child!r}, not a mapping. "
                f"Fix: set {prefix}= directly."
            )
        node = child
    node[parts[-1]] = value
    return result
