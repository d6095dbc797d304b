"""Content-defined segments of a map's items: where to cut, and what names each piece (pure).

For cheap items a map caches **segments** (runs of consecutive items) instead of items. A
cut falls after every item whose 64-bit fingerprint has its low ``level`` bits zero, as
rsync and restic cut files into chunks: the cuts depend on the items around them, not on
positions, so inserting or appending items moves at most the segments around the change,
and every other segment keeps its name. Expected segment length: ``2 ** level`` items,
never under a quarter of that nor over four times it.

A segment is named by a hash of its items' exact content (the values' bytes for numbers,
two independent vectorized 64-bit row hashes for pandas, a 128-bit digest per item
otherwise). Fingerprints only choose where to cut: two lists that agree on fingerprints
but not on content never share a name.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

from .items import item_bytes

__all__ = ["Fingerprints", "cut", "fingerprint", "level_for", "values_of"]

MIN_LEVEL, MAX_LEVEL = 4, 22
NUMPY_FROM = 500_000  # numbers from which importing numpy (~60 ms) beats a Python loop (~100 ns per item)
_GOLDEN = 0x9E3779B97F4A7C15  # Fibonacci hashing: the top bits of x * golden are spread for any ints
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Fingerprints:
    """Where a map's items may be cut, and the content a segment's name is computed from.

    Attributes:
        kind: How the items were read (``int64``, ``float64``, ``array``, ``frame``, ``items``).
        marks: Per item, a 64-bit value whose top bits decide whether a cut may follow it:
            a list of hashes, a numpy uint64 array (arrays, pandas), or for numbers a
            ``memoryview`` of their bits, spread by Fibonacci hashing when cut.
        content: Every item's exact content (numbers, array rows) or its 128-bit digest, as
            one buffer of ``width`` bytes per item.
        width: Bytes per item in ``content``.
        salt: Bytes naming the kind and schema (dtype, shape, columns), hashed first.
        lengths: For items of varying length (strings, bytes): each one's length in bytes,
            an ``array("q")`` (None: ``width`` bytes each).
    """

    kind: str
    marks: Any
    content: memoryview
    width: int
    salt: bytes
    lengths: Any = None

    def __len__(self) -> int:
        return len(self.marks)

    def names(self, bounds: Sequence[tuple[int, int]]) -> list[str]:
        """The content name of each segment ``(start, end)``; ``bounds`` cover the items in order."""
        names = []
        offset = 0
        for start, end in bounds:
            hasher = xxhash.xxh3_128(self.salt + b"|%d|" % (end - start))
            if self.lengths is None:
                hasher.update(self.content[start * self.width:end * self.width])
            else:  # items of varying length: their lengths, then their bytes
                lengths = memoryview(self.lengths)[start:end]
                size = sum(lengths)
                hasher.update(lengths)
                hasher.update(self.content[offset:offset + size])
                offset += size
            names.append(hasher.hexdigest())
        return names

    def candidates(self, level: int) -> list[int]:
        """Positions after which a cut may fall at ``level``: their mark's top ``level`` bits are zero."""
        below = 1 << (64 - level)
        if isinstance(self.marks, memoryview):  # numbers: their mark is x * golden (mod 2**64)
            if "numpy" in sys.modules or len(self.marks) >= NUMPY_FROM:  # vectorized (the same marks)
                import numpy as np

                spread = np.frombuffer(self.marks, dtype=np.uint64) * np.uint64(_GOLDEN)
                return np.flatnonzero(spread < np.uint64(below)).tolist()  # type: ignore[no-any-return]
            return [i for i, x in enumerate(self.marks) if (x * _GOLDEN) & _MASK64 < below]
        if isinstance(self.marks, list):
            return [i for i, mark in enumerate(self.marks) if mark < below]
        import numpy as np

        return np.flatnonzero(self.marks < np.uint64(below)).tolist()  # type: ignore[no-any-return]


def fingerprint(value: Any, file_hash: Callable[[Path], str]) -> Fingerprints:
    """Fingerprints of every item of a mapped input (in bulk for numbers, arrays and pandas)."""
    module = type(value).__module__.split(".", 1)[0]
    kind = type(value).__name__
    if module == "pandas" and kind in ("DataFrame", "Series"):
        return _pandas(value)
    if module == "numpy" and kind == "ndarray" and value.ndim >= 1:
        return _array(value)
    if isinstance(value, (list, tuple)):
        types = set(map(type, value))
        if types == {int}:
            try:
                numbers = array("q", value)
            except OverflowError:  # an int beyond 64 bits: item by item
                return _items(value, file_hash)
            raw = memoryview(numbers).cast("B")
            return Fingerprints("int64", raw.cast("Q"), raw, 8, b"int64")
        if types == {str} or types == {bytes}:
            return _texts(value, types == {str})
        if types == {float}:
            raw = memoryview(array("d", value)).cast("B")
            return Fingerprints("float64", raw.cast("Q"), raw, 8, b"float64")
    return _items(value, file_hash)


def _texts(values: Sequence[Any], strings: bool) -> Fingerprints:
    """Strings (UTF-8) or bytes: each item's length, then all their bytes; marks from a hash of each, in C loops."""
    import operator

    encoded = values
    if strings:
        try:
            encoded = list(map(str.encode, values))
        except UnicodeEncodeError:  # a lone surrogate: kept, as the per-item hash keeps it
            encoded = list(map(operator.methodcaller("encode", "utf-8", "surrogatepass"), values))
    marks = list(map(xxhash.xxh3_64_intdigest, encoded))
    return Fingerprints("str" if strings else "bytes", marks, memoryview(b"".join(encoded)), 0,
                        b"str" if strings else b"bytes", array("q", map(len, encoded)))


def _array(value: Any) -> Fingerprints:
    import numpy as np

    rows = np.ascontiguousarray(value).reshape(len(value), -1)
    salt = f"array{value.dtype.str}{value.shape[1:]}".encode()
    if rows.dtype == object:  # object arrays: per row
        return _items(list(value), lambda p: "", salt=salt)
    raw = rows.view(np.uint8).reshape(len(value), -1)
    width = raw.shape[1]
    if width and width % 8 == 0 and width <= 256:
        words = raw.view(np.uint64)
        marks = np.zeros(len(value), dtype=np.uint64)
        for column in range(words.shape[1]):
            marks = _mix(marks ^ words[:, column])
    else:
        marks = np.fromiter((xxhash.xxh3_64_intdigest(row.tobytes()) for row in raw), dtype=np.uint64,
                            count=len(value))
    return Fingerprints("array", marks, memoryview(raw).cast("B"), width, salt)  # type: ignore[arg-type]


def _mix(values: Any) -> Any:
    """splitmix64's finalizer over a numpy uint64 array (arrays wrap silently)."""
    import numpy as np

    x = values ^ (values >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _pandas(value: Any) -> Fingerprints:
    import numpy as np
    from pandas.util import hash_pandas_object

    if type(value).__name__ == "DataFrame":
        schema = repr([(str(c), str(t)) for c, t in value.dtypes.items()])
    else:
        schema = repr(("series", str(value.dtype)))
    low = hash_pandas_object(value, index=False, hash_key="orchestrator0001").to_numpy(dtype=np.uint64)
    high = hash_pandas_object(value, index=False, hash_key="orchestrator0002").to_numpy(dtype=np.uint64)
    content = np.ascontiguousarray(np.stack([low, high], axis=1))
    return Fingerprints("frame", _mix(low), memoryview(content).cast("B"), 16, schema.encode())  # type: ignore[arg-type]


def _items(values: Sequence[Any], file_hash: Callable[[Path], str], salt: bytes = b"items") -> Fingerprints:
    """A 128-bit digest per item, typed as the per-item cache hashes them (``1``, ``1.0``, ``"1"`` differ)."""
    digest = xxhash.xxh3_128_intdigest
    numbers = [digest(item_bytes(item, file_hash)) for item in values]
    content = b"".join(number.to_bytes(16, "little") for number in numbers)
    return Fingerprints("items", [number & _MASK64 for number in numbers], memoryview(content), 16, salt)


def cut(prints: Fingerprints, level: int) -> list[tuple[int, int]]:
    """Segments ``(start, end)`` covering every item: a cut after each candidate item, at least
    ``2**level // 4`` and at most ``4 * 2**level`` items apart."""
    size = len(prints)
    shortest, longest = max(1, (1 << level) // 4), 4 << level
    bounds: list[tuple[int, int]] = []
    start = 0
    for after in prints.candidates(level):
        end = after + 1
        while end - start > longest:
            bounds.append((start, start + longest))
            start += longest
        if end - start >= shortest:
            bounds.append((start, end))
            start = end
    while start < size:
        bounds.append((start, min(size, start + longest)))
        start = bounds[-1][1]
    return bounds


def level_for(seconds_per_item: float, items: int, workers: int) -> int:
    """The cut level: segments of about a second of work, and at least four per worker."""
    by_time = 1.0 / max(seconds_per_item, 1e-9)
    by_spread = items / (max(1, workers) * 4)
    target = max(16.0, min(by_time, by_spread))
    return int(min(MAX_LEVEL, max(MIN_LEVEL, round(math.log2(target)))))


def values_of(value: Any, start: int, end: int) -> list[Any]:
    """The items ``start:end`` of a mapped input, as the stage receives them (a DataFrame row as a dict)."""
    module = type(value).__module__.split(".", 1)[0]
    kind = type(value).__name__
    if module == "pandas" and kind == "DataFrame":
        return value.iloc[start:end].to_dict("records")  # type: ignore[no-any-return]
    if module == "pandas" and kind == "Series":
        return value.iloc[start:end].tolist()  # type: ignore[no-any-return]
    if module == "numpy" and kind == "ndarray":
        return list(value[start:end])
    return list(value[start:end])
