"""Small outputs kept inside their key record instead of a file of their own.

Most outputs of a research DAG are a few bytes: a count, a threshold, a metrics dict. Giving
each its own object file costs more than computing it: on a journaling file system, creating
a file (an inode, a directory entry) is the dearest step of storing a result, and a cold run
of a 100-stage chain spent most of its store time there. So an output of at most
:data:`INLINE_LIMIT` bytes, written by a cacher that can stream (``Cacher.write``/``read``),
is kept base64-encoded in its :class:`~orchestrator.store.records.ArtifactRecord` (``data``).

Nothing else changes: the record names the same content hash the file would have had, so
keys, early cutoff, deduplication of larger objects and ``experiment cache ls`` are the same,
and the bytes are verified against that hash on every load (a corrupt copy is recomputed like
a corrupt file). A stage that takes such an input as a ``pathlib.Path`` gets a real file: the
store writes the object on demand (:meth:`~orchestrator.store.base.Store.verified_path`).

The cacher writes into a :class:`Spool`, which keeps the first ``INLINE_LIMIT`` bytes in
memory and moves to the staging file once it outgrows them, so a large output is streamed to
disk as before and never held twice in memory.
"""

from __future__ import annotations

import binascii
import io
from pathlib import Path
from typing import Any

from ..errors import CorruptObjectError
from ..keys.hashing import hash_bytes
from .records import ArtifactRecord

__all__ = ["INLINE_LIMIT", "Spool", "encode", "verified_bytes"]

INLINE_LIMIT = 4096  # bytes: an output this small is kept inside its key record


class Spool(io.RawIOBase):
    """A binary file for a cacher to write to: in memory up to ``limit`` bytes, then ``path``.

    After :meth:`close`, :attr:`inline` holds the bytes when they fit, else None (and the
    bytes are in ``path``, which the spool created).
    """

    def __init__(self, path: Path, limit: int = INLINE_LIMIT) -> None:
        super().__init__()
        self.path = path
        self.limit = limit
        self._buffer: bytearray | None = bytearray()
        self._file: Any = None
        self._position = 0
        self.inline: bytes | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        size = view.nbytes
        if self._buffer is not None and self._position + size <= self.limit:
            self._buffer += view
        else:
            if self._file is None:
                self._spill()
            self._file.write(view)
        self._position += size
        return size

    def tell(self) -> int:
        return self._position

    def _spill(self) -> None:
        self._file = open(self.path, "xb")
        self._file.write(self._buffer)
        self._buffer = None

    def close(self) -> None:
        if self.closed:
            return
        if self._file is not None:
            self._file.close()
        elif self._buffer is not None:
            self.inline = bytes(self._buffer)
        super().close()


def encode(data: bytes) -> str:
    """The text kept in ``ArtifactRecord.data``."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")  # (binascii: no base64 module to import)


def verified_bytes(record: ArtifactRecord, where: str) -> bytes:
    """The inline bytes of ``record`` after checking them against its content hash.

    Raises:
        CorruptObjectError: the copy in the key record no longer matches its hash.
    """
    assert record.data is not None
    try:
        data = binascii.a2b_base64(record.data, strict_mode=True)
    except (binascii.Error, ValueError):
        actual = "not base64"
    else:
        actual = hash_bytes(data)
        if actual == record.object:
            return data
    raise CorruptObjectError(
        f"{where}: the copy of stored object {record.object[:12]} kept in its key record is corrupt "
        f"(content hash is now {actual[:12]}). Fix: rerun: a run recomputes it (or --force the stage "
        "that produces it)"
    )
