"""Canonical hashing of values, bytes and files (pure; xxh3-128 throughout).

Structures are hashed by a tagged, length-prefixed encoding, never by concatenated
strings, so ``["a", "bc"]`` and ``["ab", "c"]`` differ and ``1``, ``1.0``, ``True`` and
``"1"`` all differ. Keys are salted with :data:`SCHEME`; bump it whenever the encoding
or the key layout changes (golden values are pinned in ``tests/test_hashing.py``).
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xxhash

SCHEME = "orchestrator-key-v2"
CHUNK = 1 << 20  # bytes read per call when hashing files that cannot be mapped
WINDOW = 64 << 20  # bytes of a file mapped at a time when hashing it

__all__ = ["CHUNK", "Encoded", "SCHEME", "hash_bytes", "hash_file", "hash_struct", "encode"]


def hash_bytes(data: bytes | bytearray | memoryview) -> str:
    """Hash a buffer in place; returns 32 hex characters."""
    return xxhash.xxh3_128_hexdigest(data)


def hash_file(path: str | Path) -> str:
    """Hash a file's bytes (same digest as :func:`hash_bytes` of its content).

    Small files take one read. Larger ones are hashed through read-only memory maps of
    ``WINDOW`` bytes at a time, which skips copying the page cache into a buffer (twice as
    fast on a 500 MiB artifact) and keeps at most one window resident; where a file cannot be
    mapped, it is read in ``CHUNK``-byte pieces.
    """
    with open(path, "rb", buffering=0) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size <= CHUNK:  # most artifacts: one read, no 1 MiB buffer to zero
            return xxhash.xxh3_128_hexdigest(handle.readall())
        hasher = xxhash.xxh3_128()
        try:
            _hash_mapped(handle.fileno(), size, hasher)
        except (OSError, ValueError):  # a file system without mmap: read it
            hasher.reset()
            handle.seek(0)
            _hash_read(handle, hasher)
    return hasher.hexdigest()


def _hash_mapped(fd: int, size: int, hasher: Any) -> None:
    import mmap

    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # populate: fault the window in at once
    for offset in range(0, size, WINDOW):
        window = mmap.mmap(fd, min(WINDOW, size - offset), flags=flags, prot=mmap.PROT_READ, offset=offset)
        try:
            hasher.update(window)
        finally:
            window.close()


def _hash_read(handle: Any, hasher: Any) -> None:
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while True:
        n = handle.readinto(buffer)
        if not n:
            break
        hasher.update(view[:n])


def hash_struct(value: Any) -> str:
    """Hash a JSON-like structure (None, bool, int, float, str, bytes, list, tuple, dict)."""
    out = bytearray()
    encode(value, out)
    return xxhash.xxh3_128_hexdigest(out)


_LENGTH = struct.Struct("<Q").pack


class Encoded:
    """A value's canonical encoding, made once: :func:`encode` writes it as the value itself would be.

    A part shared by many keys (a stage's code parts, the same in every param set) is encoded once.
    """

    __slots__ = ("data",)

    def __init__(self, value: Any) -> None:
        out = bytearray()
        encode(value, out)
        self.data = bytes(out)


def _put(out: bytearray, tag: bytes, payload: bytes) -> None:
    out += tag
    out += _LENGTH(len(payload))
    out += payload


def encode(value: Any, out: bytearray) -> None:
    """Append the canonical encoding of ``value`` to ``out``.

    Raises:
        TypeError: for values with no canonical form (functions, arbitrary objects).
    """
    kind = type(value)  # the exact types of key parts first (a cache key is hundreds of them); the rest below
    if kind is str:
        data = value.encode("utf-8", "surrogatepass")
        out += b"s"
        out += _LENGTH(len(data))
        out += data
    elif kind is list or kind is tuple:
        out += b"l" if kind is list else b"t"
        out += _LENGTH(len(value))
        for item in value:
            encode(item, out)
    elif kind is dict and all(type(k) is str for k in value):
        out += b"d"
        out += _LENGTH(len(value))
        for key in sorted(value):
            data = key.encode("utf-8", "surrogatepass")
            out += b"k"
            out += _LENGTH(len(data))
            out += data
            encode(value[key], out)
    elif kind is Encoded:
        out += value.data
    elif kind is int:
        data = str(value).encode()
        out += b"i"
        out += _LENGTH(len(data))
        out += data
    else:
        _encode_other(value, out)


def _encode_other(value: Any, out: bytearray) -> None:
    if value is None:
        out += b"N"
    elif value is True or value is False:
        out += b"T" if value else b"F"
    elif isinstance(value, int):
        _put(out, b"i", str(value).encode())
    elif isinstance(value, float):
        text = repr(value) if math.isfinite(value) or math.isinf(value) else "nan"
        _put(out, b"f", text.encode())
    elif isinstance(value, str):
        _put(out, b"s", value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, (bytes, bytearray, memoryview)):
        _put(out, b"b", bytes(value))
    elif isinstance(value, (list, tuple)):
        out += b"l" if isinstance(value, list) else b"t"
        out += _LENGTH(len(value))
        for item in value:
            encode(item, out)
    elif isinstance(value, Mapping):
        items = sorted(((_key_text(k), v) for k, v in value.items()), key=lambda kv: kv[0])
        out += b"d"
        out += _LENGTH(len(items))
        for key, item in items:
            _put(out, b"k", key.encode("utf-8", "surrogatepass"))
            encode(item, out)
    elif isinstance(value, (set, frozenset)):
        encoded = sorted(hash_struct(item) for item in value)
        out += b"S"
        encode(encoded, out)
    elif isinstance(value, Path):
        _put(out, b"p", value.as_posix().encode())
    else:
        raise TypeError(
            f"cannot hash a value of type {type(value).__name__}: "
            "params and key parts must be None, bool, int, float, str, bytes, list, tuple or dict"
        )


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    return f"\x00{type(key).__name__}:{key!r}"
