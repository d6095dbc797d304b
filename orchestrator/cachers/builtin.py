"""The built-in cachers. Heavy libraries (numpy, pandas, torch) are imported on first use."""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path
from typing import IO, Any

from .base import Cacher
from .stable import stable

__all__ = ["BUILTINS"]


def _module_of(obj: Any) -> str:
    return type(obj).__module__.split(".", 1)[0]


class _Streamed(Cacher):
    """A cacher defined by ``write`` and ``read``: ``save`` and ``load`` open the path for them."""

    def save(self, obj: Any, path: Path) -> None:
        with open(path, "wb") as handle:
            self.write(obj, handle)

    def load(self, path: Path) -> Any:
        with open(path, "rb") as handle:
            return self.read(handle)


class PickleCacher(_Streamed):
    """Any picklable object (cloudpickle on save, so lambdas and local classes work)."""

    name = "pickle"
    extension = ".pkl"

    def write(self, obj: Any, file: IO[bytes]) -> None:
        import cloudpickle

        cloudpickle.dump(stable(obj), file, protocol=pickle.HIGHEST_PROTOCOL)

    def read(self, file: IO[bytes]) -> Any:
        return pickle.load(file)


JSON_MAX_ITEMS = 10_000  # chosen by type only up to this many entries: a million numbers as JSON take 10x
JSON_MAX_CHARS = 2**20  # longer to write and read than pickled, and nobody reads them; nor beyond 1 MiB of text


class JsonCacher(_Streamed):
    """JSON-safe dicts and lists (chosen only when they round-trip exactly, and are small enough to read)."""

    name = "json"
    extension = ".json"

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        if not isinstance(obj, (dict, list)) or len(obj) > JSON_MAX_ITEMS:
            return False
        try:
            if _is_flat(obj):  # a flat list of ints, strings...: round-trips by construction
                return True
            text = json.dumps(obj, allow_nan=False)
            return len(text) <= JSON_MAX_CHARS and json.loads(text) == obj
        except (TypeError, ValueError):
            return False

    def write(self, obj: Any, file: IO[bytes]) -> None:
        text = _flat_json(obj)
        if text is None:
            text = json.dumps(obj, indent=1, sort_keys=True, allow_nan=False)
        file.write(text.encode("utf-8"))

    def read(self, file: IO[bytes]) -> Any:
        return json.loads(file.read())


_SCALARS = {int, str, float, bool, type(None)}


def _is_flat(obj: Any) -> bool:
    """A list of ints, strings, bools, None and finite floats."""
    if type(obj) is not list:
        return False
    types = set(map(type, obj))
    return types <= _SCALARS and (float not in types or all(map(math.isfinite, (v for v in obj if type(v) is float))))


def _flat_json(obj: Any) -> str | None:
    """``json.dumps(obj, indent=1, sort_keys=True, allow_nan=False)`` for a flat list of scalars, the same
    text built without the pure-Python encoder that ``indent`` falls back to (100x faster); else None.

    Raises:
        ValueError: a float that is not finite (as ``allow_nan=False``).
    """
    if type(obj) is not list:
        return None
    types = set(map(type, obj))
    if not types <= _SCALARS:
        return None
    if not obj:
        return "[]"
    if types == {int}:
        parts = map(int.__repr__, obj)
    elif types == {str}:
        parts = map(json.encoder.encode_basestring_ascii, obj)  # type: ignore[attr-defined]
    else:
        parts = map(_scalar_json, obj)
    return "[\n " + ",\n ".join(parts) + "\n]"


def _scalar_json(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return json.encoder.encode_basestring_ascii(value)  # type: ignore[attr-defined,no-any-return]
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    if kind is float and not math.isfinite(value):
        raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
    return repr(value)  # int and float are exact types here: repr is what json writes


class YamlCacher(_Streamed):
    """YAML documents (safe dump/load)."""

    name = "yaml"
    extension = ".yaml"

    def write(self, obj: Any, file: IO[bytes]) -> None:
        import yaml

        file.write(yaml.safe_dump(obj, sort_keys=True).encode("utf-8"))

    def read(self, file: IO[bytes]) -> Any:
        import yaml

        return yaml.safe_load(file.read().decode("utf-8"))


class TextCacher(_Streamed):
    """``str`` values, UTF-8."""

    name = "text"
    extension = ".txt"

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        return isinstance(obj, str)

    @classmethod
    def hands_off(cls, obj: Any) -> bool:
        return type(obj) is str

    def write(self, obj: Any, file: IO[bytes]) -> None:
        file.write(obj.encode("utf-8"))

    def read(self, file: IO[bytes]) -> Any:
        return file.read().decode("utf-8")


class BytesCacher(_Streamed):
    """``bytes`` values, verbatim."""

    name = "bytes"
    extension = ".bin"

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        return isinstance(obj, (bytes, bytearray))

    @classmethod
    def hands_off(cls, obj: Any) -> bool:
        return type(obj) is bytes

    def write(self, obj: Any, file: IO[bytes]) -> None:
        file.write(bytes(obj))

    def read(self, file: IO[bytes]) -> Any:
        return file.read()


class NumpyCacher(Cacher):
    """numpy arrays as ``.npy`` (no pickled object arrays)."""

    name = "numpy"
    extension = ".npy"

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        return _module_of(obj) == "numpy" and type(obj).__name__ == "ndarray" and obj.dtype.kind != "O"

    @classmethod
    def hands_off(cls, obj: Any) -> bool:
        # a view (``base`` set) shares memory with an array someone else may hold; a reload is writable;
        # .npy keeps neither dtype metadata nor a structured dtype's alignment
        return (cls.accepts(obj) and obj.base is None and bool(obj.flags.owndata and obj.flags.writeable)
                and obj.dtype.metadata is None and obj.dtype.fields is None)

    def save(self, obj: Any, path: Path) -> None:
        import numpy as np

        with open(path, "wb") as handle:
            np.save(handle, obj, allow_pickle=False)

    def load(self, path: Path) -> Any:
        import numpy as np

        return np.load(path, allow_pickle=False)


class ParquetCacher(Cacher):
    """pandas DataFrames as Parquet (pyarrow); the default for DataFrames."""

    name = "parquet"
    extension = ".parquet"

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        return _module_of(obj) == "pandas" and type(obj).__name__ == "DataFrame" and _parquet_safe(obj)

    def save(self, obj: Any, path: Path) -> None:
        obj.to_parquet(path)

    def load(self, path: Path) -> Any:
        import pandas as pd

        return pd.read_parquet(path)


def _parquet_safe(frame: Any) -> bool:
    columns = frame.columns
    return all(isinstance(c, str) for c in columns) and columns.is_unique


class CsvCacher(Cacher):
    """pandas DataFrames as CSV (human-readable; dtypes beyond numbers and strings are lost)."""

    name = "csv"
    extension = ".csv"

    def save(self, obj: Any, path: Path) -> None:
        obj.to_csv(path, index=False)

    def load(self, path: Path) -> Any:
        import pandas as pd

        return pd.read_csv(path)


class TorchCacher(Cacher):
    """Tensors, modules and state dicts through ``torch.save``/``torch.load``."""

    name = "torch"
    extension = ".pt"

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        return _module_of(obj) == "torch"

    def save(self, obj: Any, path: Path) -> None:
        import torch

        # through a handle: saved to a path, the archive embeds the file's (random staging) name
        with open(path, "wb") as handle:
            torch.save(obj, handle)

    def load(self, path: Path) -> Any:
        import torch

        return torch.load(path, weights_only=False, map_location="cpu")


class FileCacher(Cacher):
    """A returned ``pathlib.Path`` to a file, ingested into the store; loads as its stored path."""

    name = "file"

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        return isinstance(obj, Path) and obj.is_file()

    def save(self, obj: Any, path: Path) -> None:
        source = Path(obj)
        if not source.is_file():
            raise FileNotFoundError(f"the stage returned {source}, which is not a file")
        shutil.copyfile(source, path)

    def load(self, path: Path) -> Any:
        return path


class DirCacher(Cacher):
    """A returned ``pathlib.Path`` to a folder, ingested as a whole; loads as its stored path."""

    name = "dir"
    kind = "dir"

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        return isinstance(obj, Path) and obj.is_dir()

    def save(self, obj: Any, path: Path) -> None:
        source = Path(obj)
        if not source.is_dir():
            raise NotADirectoryError(f"the stage returned {source}, which is not a folder")
        shutil.copytree(source, path, symlinks=False)

    def load(self, path: Path) -> Any:
        return path


BUILTINS: list[type[Cacher]] = [
    PickleCacher,
    JsonCacher,
    YamlCacher,
    TextCacher,
    BytesCacher,
    NumpyCacher,
    ParquetCacher,
    CsvCacher,
    TorchCacher,
    FileCacher,
    DirCacher,
]
