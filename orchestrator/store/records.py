"""What the store records about stored outputs: artifact records and key records.

A key record says which outputs one stage execution produced; each output is an
:class:`ArtifactRecord` naming the content hash of its stored bytes. Those bytes live in a
file of their own (``objects/ab/<hash>``), or, for a small output of a streaming cacher,
inside the record itself (``data``, see :mod:`orchestrator.store.inline`). Either way the hashes
are the same, so nothing downstream of the record can tell the two apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..keys.hashing import hash_struct

__all__ = ["ArtifactRecord", "KeyRecord", "artifact_hash"]


def artifact_hash(cacher: str, cacher_version: str, object_hash: str) -> str:
    """The hash downstream keys see: the object's content as read by a given cacher."""
    return hash_struct(["Artifact", cacher, cacher_version, object_hash])


@dataclass(frozen=True)
class ArtifactRecord:
    """One stored output of a stage execution.

    Attributes:
        object: The content hash of the stored bytes (the object's name in the store).
        data: Those bytes, base64-encoded, when they are kept inside the key record
            (outputs of at most :data:`~orchestrator.store.inline.INLINE_LIMIT` bytes); else None.
        refs: Objects the stored value refers to: files it held as paths, kept in the store
            (:mod:`orchestrator.store.storedpaths`). gc keeps them, verify checks them.
    """

    name: str
    hash: str
    object: str
    cacher: str
    cacher_version: str
    size: int
    kind: str = "file"
    data: str | None = None
    refs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "refs", tuple(self.refs))  # (a list, as read back from JSON)

    def to_dict(self) -> dict[str, Any]:
        """The record as stored (``data`` only when the bytes are inline, ``refs`` only when there are some)."""
        values = dict(vars(self))
        if values["data"] is None:
            del values["data"]
        if values["refs"]:
            values["refs"] = list(values["refs"])
        else:
            del values["refs"]
        return values


@dataclass(frozen=True)
class KeyRecord:
    """What one stage execution stored under its key."""

    key: str
    stage: str
    param_set: str
    parts: Mapping[str, Any]
    outputs: Mapping[str, ArtifactRecord]
    created: float
    seconds: float
    extras: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialize for the store."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # asdict() deep-copies: 5x slower
        data["outputs"] = {name: record.to_dict() for name, record in self.outputs.items()}
        return json.dumps(data, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> KeyRecord:
        """Parse a stored record."""
        data = json.loads(text)
        outputs = {name: ArtifactRecord(**value) for name, value in data.pop("outputs").items()}
        return cls(outputs=outputs, **data)
