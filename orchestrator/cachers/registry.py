"""Cachers by name: the built-ins (imported on first use) and those a project registers."""

from __future__ import annotations

from typing import Any

from ..errors import UnknownCacherError, did_you_mean
from ..registry import Registry
from .base import Cacher

__all__ = ["choose_cacher", "get_cacher", "lazy_paths", "register_cacher", "registered_cachers"]

_BUILTIN = {name: f"orchestrator.cachers.builtin:{cls}" for name, cls in [
    ("pickle", "PickleCacher"), ("json", "JsonCacher"), ("yaml", "YamlCacher"), ("text", "TextCacher"),
    ("bytes", "BytesCacher"), ("numpy", "NumpyCacher"), ("parquet", "ParquetCacher"), ("csv", "CsvCacher"),
    ("torch", "TorchCacher"), ("file", "FileCacher"), ("dir", "DirCacher"),
]}


def _unknown(name: str, names: list[str]) -> Exception:
    return UnknownCacherError(f"unknown cacher {name!r}.{did_you_mean(name, names)} Registered: "
                              f"{', '.join(names)}. Fix: use one of those or register_cacher() yours.")


_REGISTRY: Registry[Cacher] = Registry(Cacher, _BUILTIN, _unknown)
_INSTANCES: dict[str, Cacher] = {}
# the order in which cachers are offered an object whose stage names no cacher; pickle is the fallback
_AUTO_ORDER: list[str] = ["file", "dir", "numpy", "parquet", "torch", "text", "bytes", "json"]


def register_cacher(cacher: type[Cacher] | str, name: str | None = None, *, auto: bool = False) -> None:
    """Register a cacher class, or a lazy ``"package.module:Class"`` string.

    Args:
        cacher: A :class:`Cacher` subclass, or where to import it from on first use.
        name: The registry name (default: the class's ``name``; required for lazy strings).
        auto: Offer it objects of stages that name no cacher (checked before the built-ins).
    """
    key = _REGISTRY.register(cacher, name)
    _INSTANCES.pop(key, None)
    if auto and key not in _AUTO_ORDER:
        _AUTO_ORDER.insert(0, key)


def registered_cachers() -> list[str]:
    """Names of every registered cacher."""
    return _REGISTRY.names()


def get_cacher(name: str) -> Cacher:
    """Return the cacher registered as ``name``.

    Raises:
        UnknownCacherError: no cacher of that name.
    """
    instance = _INSTANCES.get(name)
    if instance is None:
        instance = _INSTANCES[name] = _REGISTRY.get(name)()
    return instance


def choose_cacher(obj: Any) -> Cacher:
    """The cacher for an object whose stage names none: the first that accepts it, else pickle."""
    for name in _AUTO_ORDER:
        cacher = get_cacher(name)
        if cacher.accepts(obj):
            return cacher
    return get_cacher("pickle")


def lazy_paths() -> dict[str, str]:
    """Built-in and registered cachers still named by a module path (a test imports each)."""
    return _REGISTRY.lazy_paths()
