"""The content-addressed artifact store.

Layout (relative keys, the same on a local folder and on a remote fsspec URL)::

    objects/ab/<hash>       stored objects, files or folders, read-only, named by content hash
    keys/ab/<key>.json      key records: which objects a stage execution produced (small
                            outputs are kept inside the record itself: see inline.py)
    refs.json               the key parts of each stage's last execution per param set (for plan reasons)
    maps/ab/<map key>/...   per-item results of map stages (see segments.py)
    leases/<key>.<gen>.json per-key leases of running stages (see leases.py)

and, always on the local disk (``root``): ``tmp/`` (staging), ``attempts/`` (resumable
working folders), ``runs/`` (logs, reports, the run database).

Publishing is atomic: objects and records are staged under ``tmp/`` and renamed into
place, so a killed process leaves at most garbage in ``tmp/``, never a partial object.
Objects are verified against their content hash when loaded. :class:`Store` holds the
logic; subclasses provide a handful of primitives (:class:`LocalStore` here, the fsspec
store in ``remote.py``).
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import CorruptObjectError, StoreError
from ..keys.hashing import hash_file
from .localfs import (
    describe_entry,
    entry_kind,
    first_non_folder,
    hash_tree,
    make_read_only,
    not_a_folder,
    remove,
)
from .records import ArtifactRecord, KeyRecord, artifact_hash
from .workspace import Workspace

logger = logging.getLogger(__name__)

__all__ = ["ArtifactRecord", "KeyRecord", "Store", "artifact_hash", "describe"]


def describe(record: ArtifactRecord, stage: str = "", param_set: str = "") -> str:
    """How error messages name an artifact: ``artifact 'x' of stage 's' [set]``."""
    return f"artifact {record.name!r}" + (f" of stage {stage!r} [{param_set}]" if stage else "")


class Store:
    """Store logic over primitives: objects, key records, refs; ``root`` is the local folder (see ``workspace``)."""

    url: str
    root: Path

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.workspace = Workspace(self.root, self.prepare)
        self._ready = False
        self._refs: dict[str, dict[str, Any]] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- primitives (subclasses) -----------------------------------------------------------
    def read_text(self, rel: str) -> str | None:
        """The text stored at ``rel``, or None when absent."""
        raise NotImplementedError

    def write_text(self, rel: str, text: str) -> None:
        """Publish ``text`` at ``rel`` atomically (readers see the old or the new text)."""
        raise NotImplementedError

    def create_exclusive(self, rel: str, text: str) -> bool:
        """Create ``rel`` only if absent; True when this call created it."""
        raise NotImplementedError

    def share(self, rel: str, text: str) -> bool:
        """Write ``rel`` for :meth:`link_exclusive` to give more names; False where the store has no links."""
        return False

    def link_exclusive(self, rel: str, shared: str) -> bool:
        """Make ``rel`` another name of the file ``shared`` only if absent; True when this call made it."""
        raise NotImplementedError

    def rewrite(self, rel: str, text: str) -> None:
        """Replace the content of the file ``rel`` in place (every name of it sees the new text)."""
        raise NotImplementedError

    def list_names(self, rel_dir: str) -> list[str]:
        """Names of the entries directly under ``rel_dir`` (empty when absent)."""
        raise NotImplementedError

    def delete(self, rel: str) -> None:
        """Remove ``rel`` if present."""
        raise NotImplementedError

    def has_object(self, object_hash: str) -> bool:
        """True when the object exists (not verified)."""
        raise NotImplementedError

    def _publish(self, staged: Path, object_hash: str) -> None:
        """Move a staged, hashed file or folder to the object ``object_hash`` (if absent)."""
        raise NotImplementedError

    def local_object(self, object_hash: str, kind: str = "file") -> Path:
        """A local path holding the object (downloaded first for a remote store)."""
        raise NotImplementedError

    def discard_object(self, object_hash: str) -> None:
        """Delete an object (a corrupt one, or garbage)."""
        raise NotImplementedError

    def object_entries(self) -> Iterator[tuple[str, int, float]]:
        """Every stored object as (hash, size in bytes, modification time)."""
        raise NotImplementedError

    # -- setup -----------------------------------------------------------------------------
    def folders(self) -> tuple[Path, ...]:
        """The folders of the store on the local disk (created on demand)."""
        return self.workspace.folders()

    def layout_problems(self, deep: bool = False) -> list[Path]:
        """The store's folders (or the store itself) that exist as something else: a file, a FIFO, a broken link.

        ``deep`` also looks one level down, where a store has prefix folders (``keys/ab``).
        """
        found = (first_non_folder(self.root, folder) for folder in self.folders())
        return sorted({path for path in found if path is not None})

    def prepare(self) -> None:
        """Create the local folders; raises StoreError when the location is not writable.

        Something else where a folder belongs (a file where ``tmp/`` should be) is named, with its fix.
        """
        if self._ready:
            return
        blocked = self.layout_problems()
        if blocked:
            raise not_a_folder(blocked[0], self.root)
        try:
            for folder in self.workspace.folders():
                folder.mkdir(parents=True, exist_ok=True)
            probe = self.workspace.tmp / f".probe-{os.urandom(16).hex()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreError(
                f"cannot write the artifact store at {self.root}: {exc.strerror or exc}. "
                "Fix: pass --cache-dir DIR (or set ORCHESTRATOR_CACHE_DIR) to a writable folder."
            ) from exc
        self._ready = True

    # -- objects ---------------------------------------------------------------------------
    def ingest(self, staged: Path) -> tuple[str, int, str]:
        """Hash a staged file or folder and publish it as an object; returns (hash, size, kind).

        Identical content is stored once: when the object exists already, the staged copy
        is discarded.
        """
        info = os.stat(staged)
        kind = "dir" if stat.S_ISDIR(info.st_mode) else "file"
        digest, size = hash_tree(staged) if kind == "dir" else (hash_file(staged), info.st_size)
        if self.has_object(digest) and self._existing_is_intact(digest, kind):
            remove(staged)
        else:
            if kind == "dir":
                make_read_only(staged)
            else:  # one file: the stat above is enough
                os.chmod(staged, info.st_mode & ~0o222)
            self._publish(staged, digest)
        return digest, size, kind

    def verified_path(self, record: ArtifactRecord, *, stage: str = "", param_set: str = "") -> Path:
        """A local path of the object after checking its content hash.

        Raises:
            CorruptObjectError: the object is missing or its content changed.
        """
        where = describe(record, stage, param_set)
        if record.data is not None and not self.has_object(record.object):
            self._materialize(record, where)  # a stage wants a file of an output kept in its key record
        if not self.has_object(record.object):
            raise CorruptObjectError(f"{where}: stored object {record.object[:12]} is missing from {self.url}.")
        path = self.local_object(record.object, record.kind)
        if self._known_intact(record.object, path):
            return path
        if entry_kind(path) != record.kind:  # (a folder or a FIFO where a file belongs: never opened)
            raise CorruptObjectError(
                f"{where}: stored object {record.object[:12]} is {describe_entry(path)} where a "
                f"{'folder' if record.kind == 'dir' else 'file'} should be ({path}). "
                "Fix: rerun: a run recomputes it (or --force the stage that produces it)"
            )
        actual = hash_tree(path)[0] if record.kind == "dir" else hash_file(path)
        if actual != record.object:
            raise CorruptObjectError(
                f"{where}: stored object {record.object[:12]} is corrupt (content hash is now {actual[:12]}). "
                "Fix: rerun: a run recomputes it (or --force the stage that produces it)"
            )
        self._remember_intact(record.object, path)
        return path

    def _materialize(self, record: ArtifactRecord, where: str) -> None:
        """Write the object of an inline output (verified first) as a file of its own."""
        from .inline import verified_bytes

        staged = self.workspace.staging_path()
        staged.write_bytes(verified_bytes(record, where))
        self.ingest(staged)

    def _known_intact(self, object_hash: str, path: Path) -> bool:
        """True when this process stored or verified the object and its file is unchanged since."""
        return False

    def _remember_intact(self, object_hash: str, path: Path) -> None:
        """Note that the object at ``path`` was just written or verified by this process."""

    def _existing_is_intact(self, object_hash: str, kind: str) -> bool:
        """Whether an existing object may stand in for a fresh copy (remote stores trust it)."""
        return True

    def object_is_intact(self, object_hash: str) -> bool:
        """True when the (file) object exists and still matches its hash."""
        if not self.has_object(object_hash):
            return False
        path = self.local_object(object_hash)
        return entry_kind(path) == "file" and hash_file(path) == object_hash

    # -- key records and refs --------------------------------------------------------------
    def get_record(self, key: str) -> KeyRecord | None:
        """The record stored under ``key``, or None (unreadable records count as absent)."""
        text = self.read_text(f"keys/{key[:2]}/{key}.json")
        if text is None:
            return None
        try:
            return KeyRecord.from_json(text)
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning("key record %s is damaged (%s); the stage will run again", key[:12], exc)
            return None

    def put_record(self, record: KeyRecord) -> None:
        """Publish a key record atomically."""
        self.write_text(f"keys/{record.key[:2]}/{record.key}.json", record.to_json())

    def drop_record(self, key: str) -> None:
        """Forget a key (its objects stay until garbage collection)."""
        self.delete(f"keys/{key[:2]}/{key}.json")

    def records(self, on_damaged: Callable[[str], None] | None = None) -> Iterator[KeyRecord]:
        """Every key record in the store; a damaged one is skipped (and its key given to ``on_damaged``)."""
        for prefix in sorted(self.list_names("keys")):
            for name in sorted(self.list_names(f"keys/{prefix}")):
                text = self.read_text(f"keys/{prefix}/{name}")
                try:
                    yield KeyRecord.from_json(text or "")
                except (ValueError, TypeError, KeyError):
                    if on_damaged is None:
                        logger.warning("skipping damaged key record %s", name)
                    else:
                        on_damaged(name.removesuffix(".json"))

    def _read_refs(self) -> dict[str, dict[str, Any]]:
        text = self.read_text("refs.json")
        try:
            refs = json.loads(text) if text else {}
        except ValueError:
            logger.warning("refs.json is damaged; plans will explain less until the next run rewrites it")
            refs = {}
        return refs if isinstance(refs, dict) else {}

    def get_ref(self, stage: str, param_set: str) -> dict[str, Any] | None:
        """The key parts of the last execution of ``stage`` for ``param_set`` (read once per process)."""
        if self._refs is None:
            self._refs = self._read_refs()
        return self._refs.get(stage, {}).get(param_set)

    def put_refs(self, updates: Mapping[tuple[str, str], Mapping[str, Any]]) -> None:
        """Remember the key parts of the latest executions (one write per run, merged with others')."""
        if not updates:
            return
        refs = self._read_refs()
        for (stage, param_set), parts in updates.items():
            refs.setdefault(stage, {})[param_set] = parts
        self.write_text("refs.json", json.dumps(refs, sort_keys=True, default=str))
        self._refs = refs
