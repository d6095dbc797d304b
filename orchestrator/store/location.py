"""Open the store at a location: a local (or NFS) folder or an fsspec URL, one per process."""

from __future__ import annotations

import os
from pathlib import Path

from .base import Store

__all__ = ["open_store"]


_OPEN: dict[tuple[str, str], Store] = {}


def open_store(location: str | os.PathLike[str], local: Path | None = None) -> Store:
    """The store for a local path or an fsspec URL (``s3://bucket/prefix``), one per process."""
    entry = (str(location), str(local or ""))
    store = _OPEN.get(entry)
    if store is None:
        store = _OPEN[entry] = _open(str(location), local)
    return store


def _open(text: str, local: Path | None) -> Store:
    if "://" in text and not text.startswith("file://"):
        from .remote import RemoteStore

        return RemoteStore(text, local)
    from .local import LocalStore

    return LocalStore(Path(text.removeprefix("file://")))
