"""How ``experiment artifact`` shows a stored value to a person: a table's head, a dict as JSON, an array's summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..units import byte_size

__all__ = ["describe_value", "jsonable"]

ROWS = 10  # rows of a table shown
ITEMS = 50  # elements of a long list shown


def describe_value(value: Any) -> str:
    """A few lines a person can read for ``value`` (its type decides how)."""
    kind = f"{type(value).__module__.split('.')[0]}.{type(value).__name__}"
    if kind == "pandas.DataFrame":
        rows, columns = value.shape
        return f"DataFrame: {rows} rows x {columns} columns\n{value.head(ROWS).to_string(max_cols=12)}" + (
            f"\n… {rows - ROWS} more rows" if rows > ROWS else "")
    if kind == "pandas.Series":
        return f"Series {value.name!r}: {len(value)} values, dtype {value.dtype}\n{value.head(ROWS).to_string()}"
    if kind == "numpy.ndarray":
        return _array(value)
    if isinstance(value, Path):
        return _path(value)
    if isinstance(value, (dict, list, tuple)):
        shown = value[:ITEMS] if isinstance(value, (list, tuple)) else value
        text = json.dumps(jsonable(shown), indent=2, default=str)
        more = len(value) - ITEMS if isinstance(value, (list, tuple)) and len(value) > ITEMS else 0
        return f"{type(value).__name__} of {len(value)}\n{text}" + (f"\n… {more} more" if more else "")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return str(value)
    text = repr(value)
    return f"{kind}\n{text[:2000]}" + ("…" if len(text) > 2000 else "")


def _array(value: Any) -> str:
    import numpy as np

    head = f"array: shape {value.shape}, dtype {value.dtype}"
    if value.size and np.issubdtype(value.dtype, np.number):
        finite = value[np.isfinite(value)] if np.issubdtype(value.dtype, np.floating) else value
        if finite.size:
            head += f", min {finite.min():.6g}, max {finite.max():.6g}, mean {finite.mean():.6g}"
    return f"{head}\n{np.array2string(value, threshold=50, edgeitems=3)}"


def _path(path: Path) -> str:
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file()]
        return f"folder {path}: {len(files)} files, {byte_size(sum(p.stat().st_size for p in files))}"
    return f"file {path}: {byte_size(path.stat().st_size)}"


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data (tables as records, arrays as lists, paths as strings), else its repr."""
    kind = f"{type(value).__module__.split('.')[0]}.{type(value).__name__}"
    if kind == "pandas.DataFrame":
        return json.loads(value.to_json(orient="records", default_handler=str))
    if kind == "pandas.Series":
        return json.loads(value.to_json(default_handler=str))
    if kind == "numpy.ndarray":
        return value.tolist()
    if kind.startswith("numpy.") and hasattr(value, "item"):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)
