"""Per-item results of map stages, stored in batched segments (not one file per item).

A segment is one content-addressed object holding the results of a chunk of items, plus
a small index record listing the item hashes it covers::

    maps/<mk[:2]>/<map key>/<segment object hash>.json   {"object": ..., "items": [...], "refs": [...]}

Files an item returns as paths (written into ``ctx.scratch_dir``, say) are stored with the
segment (:mod:`orchestrator.store.storedpaths`); ``refs`` lists them so gc keeps them as long
as the segment.

Workers write segments as they finish chunks, so a map killed at item 73,512 keeps every
finished chunk; the next run reads the index and computes only the missing items.

Maps of cheap items cache **content-defined segments** instead (:mod:`orchestrator.map.cuts`):
one object per run of items, its record named by the cut level, the segment's content name
and the object, so one folder listing tells which segments exist without reading a record::

    maps/<mk[:2]>/<map key>/s<level>-<segment name>-<object hash>.json
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..store.base import Store
from ..store.storedpaths import store_paths

logger = logging.getLogger(__name__)

__all__ = ["Piece", "Segment", "SegmentStore"]


SLOW_MARK = "s-item.json"  # (named s...: item-record readers skip it; not a segment name either)
_PLAIN = {int, float, bool, str, bytes, complex, type(None)}


@dataclass(frozen=True)
class Segment:
    """Where a segment lives and which items it holds."""

    object: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class Piece:
    """A stored content-defined segment: its cut level and the object holding its results."""

    level: int
    object: str


class SegmentStore:
    """The segments of one map key."""

    def __init__(self, store: Store, map_key: str) -> None:
        self.store = store
        self.map_key = map_key
        self.folder = f"maps/{map_key[:2]}/{map_key}"

    def segments(self) -> list[Segment]:
        """Every readable segment record of this map key."""
        found = []
        for name in self.store.list_names(self.folder):
            if not name.endswith(".json") or name.startswith("s"):  # (s...: a content-defined segment)
                continue
            try:
                data = json.loads(self.store.read_text(f"{self.folder}/{name}") or "")
                found.append(Segment(data["object"], tuple(data["items"])))
            except (ValueError, KeyError):
                logger.warning("skipping damaged segment record %s/%s", self.folder, name)
        return found

    def index(self) -> dict[str, tuple[str, int]]:
        """item hash -> (segment object, position) over every segment whose object exists."""
        index: dict[str, tuple[str, int]] = {}
        for segment in self.segments():
            if not self.store.has_object(segment.object):
                continue
            for position, item in enumerate(segment.items):
                index.setdefault(item, (segment.object, position))
        return index

    def write(self, items: Sequence[str], results: Sequence[Any]) -> Segment:
        """Store the results of ``items`` (same order) as one segment, with the files they hold as paths."""
        import cloudpickle

        results, refs = store_paths(self.store, list(results))
        staged = self.store.workspace.staging_path(".seg")
        with open(staged, "wb") as handle:
            cloudpickle.dump(list(results), handle, protocol=pickle.HIGHEST_PROTOCOL)
        digest, _, _ = self.store.ingest(staged)
        segment = Segment(digest, tuple(items))
        record = json.dumps({"object": digest, "items": list(items), "created": time.time(), "refs": list(refs)})
        self.store.write_text(f"{self.folder}/{digest}.json", record)
        return segment

    def pieces(self) -> dict[str, Piece]:
        """Content-defined segments by name, read from the folder listing alone."""
        found: dict[str, Piece] = {}
        for entry in self.store.list_names(self.folder):
            parts = entry[1:-5].split("-") if entry.startswith("s") and entry.endswith(".json") else []
            if len(parts) == 3 and parts[0].isdigit():
                found[parts[1]] = Piece(int(parts[0]), parts[2])
        return found

    def measured_slow(self) -> bool:
        """True when ``cache="auto"`` timed this map key's items and chose to cache them one by one."""
        return self.store.read_text(f"{self.folder}/{SLOW_MARK}") is not None

    def note_slow(self, seconds_per_item: float) -> None:
        """Remember that this map key's items were timed too slow for segments."""
        note = {"object": "", "refs": [], "created": time.time(), "seconds_per_item": seconds_per_item}
        self.store.write_text(f"{self.folder}/{SLOW_MARK}", json.dumps(note))

    def write_piece(self, name: str, level: int, results: Sequence[Any]) -> Piece:
        """Store the results of the content-defined segment ``name`` (its items in order)."""
        refs: tuple[str, ...] = ()
        staged = self.store.workspace.staging_path(".seg")
        if set(map(type, results)) <= _PLAIN:  # nothing to look into: no path, no function
            with open(staged, "wb") as handle:
                pickle.dump(list(results), handle, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            import cloudpickle

            results, refs = store_paths(self.store, list(results))
            with open(staged, "wb") as handle:
                cloudpickle.dump(list(results), handle, protocol=pickle.HIGHEST_PROTOCOL)
        digest, _, _ = self.store.ingest(staged)
        record = json.dumps({"object": digest, "segment": name, "level": level, "count": len(results),
                             "created": time.time(), "refs": list(refs)})
        self.store.write_text(f"{self.folder}/s{level}-{name}-{digest}.json", record)
        return Piece(level, digest)

    def load_piece(self, name: str, piece: Piece) -> list[Any] | None:
        """A content-defined segment's results, or None (and the segment forgotten) when it is corrupt."""
        if not self.store.object_is_intact(piece.object):
            logger.warning("map segment %s of %s is missing or corrupt; its items will be recomputed", name[:12],
                           self.map_key[:12])
            self.forget_piece(name, piece)
            return None
        with open(self.store.local_object(piece.object), "rb") as handle:
            return pickle.load(handle)  # type: ignore[no-any-return]

    def forget_piece(self, name: str, piece: Piece) -> None:
        """Drop a content-defined segment whose object is corrupt (its record and object)."""
        self.store.delete(f"{self.folder}/s{piece.level}-{name}-{piece.object}.json")
        self.store.discard_object(piece.object)

    def load(self, object_hash: str) -> list[Any] | None:
        """The results in a segment, or None (and the segment forgotten) when it is corrupt."""
        if not self.store.object_is_intact(object_hash):
            logger.warning("map segment %s of %s is missing or corrupt; its items will be recomputed",
                           object_hash[:12], self.map_key[:12])
            self.forget([object_hash])
            return None
        with open(self.store.local_object(object_hash), "rb") as handle:
            return pickle.load(handle)  # type: ignore[no-any-return]

    def forget(self, objects: Iterable[str]) -> None:
        """Drop segments (their records and objects)."""
        for object_hash in objects:
            self.store.delete(f"{self.folder}/{object_hash}.json")
            self.store.discard_object(object_hash)
