"""Items of a map stage: split a mapped input into items, hash each, reassemble the results.

Supported inputs: lists and tuples (any picklable items, including ``pathlib.Path`` files,
hashed by content), pandas DataFrames (rows, passed as dicts) and Series, numpy arrays
(rows). Item hashes identify an item by content, not position, so reordering or growing
the input keeps every computed item reusable.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

from ..errors import DefinitionError

__all__ = ["ATOMS", "Items", "assemble", "independent", "item_bytes", "split_items"]

_h = xxhash.xxh3_128_hexdigest


@dataclass(frozen=True)
class Items:
    """A mapped input split into items.

    Attributes:
        values: The items, in input order (what the stage function receives).
        hashes: One content hash per item.
        kind: ``list``, ``frame``, ``series`` or ``array`` (decides how results reassemble).
        index: The DataFrame/Series index, to keep it on the output.
    """

    values: Sequence[Any]
    hashes: list[str]
    kind: str
    index: Any = None

    def __len__(self) -> int:
        return len(self.hashes)

    def assemble(self, results: list[Any], output: str) -> Any:
        """Build the map stage's output from per-item results in input order."""
        return _assembled(self.kind, self.index, results, output)


def assemble(value: Any, results: list[Any], output: str) -> Any:
    """The output of a map over ``value`` from its per-item results, in input order."""
    module = type(value).__module__.split(".", 1)[0]
    kind = type(value).__name__
    if module == "pandas" and kind in ("DataFrame", "Series"):
        return _assembled("frame" if kind == "DataFrame" else "series", value.index, results, output)
    return _assembled("array" if module == "numpy" else "list", None, results, output)


def _assembled(kind: str, index: Any, results: list[Any], output: str) -> Any:
    if kind == "frame":
        import pandas as pd

        if results and all(isinstance(r, dict) for r in results if r is not None):
            rows = [r if r is not None else {} for r in results]
            return pd.DataFrame(rows, index=index)
        return pd.DataFrame({output: results}, index=index)
    if kind == "series":
        import pandas as pd

        return pd.Series(results, index=index, name=output)
    if kind == "array" and results and all(r is not None for r in results):
        import numpy as np

        try:
            return np.stack([np.asarray(r) for r in results])
        except ValueError:  # ragged results stay a list
            return results
    return results if type(results) is list else list(results)


def split_items(value: Any, *, stage: str, artifact: str, file_hash: Callable[[Path], str]) -> Items:
    """Split the mapped input ``value`` of ``stage`` into items.

    Raises:
        DefinitionError: ``value`` is not a sequence a map can run over.
    """
    module = type(value).__module__.split(".", 1)[0]
    kind = type(value).__name__
    if module == "pandas" and kind == "DataFrame":
        return Items(value.to_dict("records"), _frame_hashes(value), "frame", value.index)
    if module == "pandas" and kind == "Series":
        values = value.tolist()
        return Items(values, _hashes(values, file_hash, stage, artifact), "series", value.index)
    if module == "numpy" and kind == "ndarray" and value.ndim >= 1:
        prefix = f"{value.dtype.str}{value.shape[1:]}".encode()
        rows = list(value)
        hashes = [_h(prefix + (row.tobytes() if hasattr(row, "tobytes") else repr(row).encode())) for row in rows]
        return Items(rows, hashes, "array")
    if isinstance(value, (list, tuple)):
        return Items(value, _hashes(value, file_hash, stage, artifact), "list")
    raise DefinitionError(
        f"stage {stage!r} maps over {artifact!r}, which is a {type(value).__name__}, not a sequence. "
        "Fix: produce a list, tuple, DataFrame, Series or numpy array for it, or drop map_over."
    )


def _hashes(values: Sequence[Any], file_hash: Callable[[Path], str], stage: str, artifact: str) -> list[str]:
    position = 0
    try:
        hashes = []
        for position, item in enumerate(values):
            hashes.append(_item_hash(item, file_hash))
        return hashes
    except (pickle.PicklingError, AttributeError, TypeError) as exc:  # what pickle raises for a lambda, a lock...
        raise DefinitionError(
            f"map stage {stage!r}: item {position} of {artifact!r} ({type(values[position]).__name__}) cannot be "
            f"sent to worker processes ({type(exc).__name__}: {exc}). Fix: map over plain data (paths, dicts, "
            f"arrays) and open resources in a @{stage}.setup function."
        ) from exc


def _item_hash(item: Any, file_hash: Callable[[Path], str]) -> str:
    return _h(item_bytes(item, file_hash))


def item_bytes(item: Any, file_hash: Callable[[Path], str]) -> bytes:
    """What an item is hashed by: its typed value (``1``, ``1.0`` and ``"1"`` differ), a file's path and
    content, or its pickle."""
    kind = type(item)
    if kind is str:
        return b"s" + item.encode("utf-8", "surrogatepass")
    if kind is int:
        return b"i%d" % item
    if kind is float:
        return b"f" + repr(item).encode()
    if kind is bytes:
        return b"b" + item
    if isinstance(item, Path):  # the stage sees the path too (its name, its folder): both are the item
        return b"p" + os.fsencode(item) + b"\0" + file_hash(item).encode()
    return b"o" + pickle.dumps(item, protocol=5)


def _frame_hashes(frame: Any) -> list[str]:
    """128-bit row hashes from two independent vectorized 64-bit row hashes, salted by the schema."""
    from pandas.util import hash_pandas_object

    schema = repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode()
    low = hash_pandas_object(frame, index=False, hash_key="orchestrator0001").to_numpy()
    high = hash_pandas_object(frame, index=False, hash_key="orchestrator0002").to_numpy()
    salt = _h(schema)
    salted = salt.encode()
    return [_h(b"%s%x.%x" % (salted, a, b)) for a, b in zip(low.tolist(), high.tolist())]


ATOMS = {int, float, bool, type(None), complex}


def independent(result: Any) -> Any:
    """An item's result sharing no object with another item's, so the output's bytes are scheduling-free.

    Items loaded from one segment may share objects (a constant string every call returned);
    pickle writes a shared object once and refers to it after. Which items share depended on
    how items were split into chunks (``--workers``, a resume, a shard): copying each result
    on its own gives every schedule the same output bytes.
    """
    if type(result) in ATOMS:
        return result
    try:
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # a local function or class inside: the segment was written with cloudpickle
        import cloudpickle

        data = cloudpickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    return pickle.loads(data)
