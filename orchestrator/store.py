"""The content-addressed artifact store on a local (or NFS) folder.

Layout::

    objects/ab/<hash>       stored objects, files or folders, read-only, named by content hash
    keys/ab/<key>.json      key records: which objects a stage execution produced
    refs/<stage>/<id>.json  the key parts of a stage's last execution per param set
    tmp/                    staging area; everything is written here and renamed into place
    attempts/<stage>/<key>  persistent working folders (resumable external training)

Publishing is atomic: objects and records are written under ``tmp/`` then renamed, so a
killed process leaves at most garbage in ``tmp/``, never a partial object. Objects are
verified against their content hash on load. This is the only module that writes the store.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import CorruptObjectError, StoreError
from .hashing import hash_file, hash_struct

logger = logging.getLogger(__name__)

__all__ = ["ArtifactRecord", "KeyRecord", "Store", "artifact_hash"]


def artifact_hash(cacher: str, cacher_version: str, object_hash: str) -> str:
    """The hash downstream keys see: the object's content as read by a given cacher."""
    return hash_struct(["Artifact", cacher, cacher_version, object_hash])


@dataclass(frozen=True)
class ArtifactRecord:
    """One stored output of a stage execution."""

    name: str
    hash: str
    object: str
    cacher: str
    cacher_version: str
    size: int
    kind: str = "file"


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
        data = asdict(self)
        return json.dumps(data, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> KeyRecord:
        """Parse a stored record."""
        data = json.loads(text)
        outputs = {name: ArtifactRecord(**value) for name, value in data.pop("outputs").items()}
        return cls(outputs=outputs, **data)


class Store:
    """A content-addressed store in a local folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.keys = self.root / "keys"
        self.refs = self.root / "refs"
        self.tmp = self.root / "tmp"
        self.attempts = self.root / "attempts"
        self._ready = False

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    @property
    def url(self) -> str:
        """Where the store lives, as given to workers."""
        return str(self.root)

    def prepare(self) -> None:
        """Create the store's folders; raises StoreError when the location is not writable."""
        if self._ready:
            return
        try:
            for folder in (self.objects, self.keys, self.refs, self.tmp, self.attempts):
                folder.mkdir(parents=True, exist_ok=True)
            probe = self.tmp / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreError(
                f"cannot write the artifact store at {self.root}: {exc.strerror or exc}. "
                "Fix: pass --cache-dir DIR (or set ORCHESTRATOR_CACHE_DIR) to a writable folder."
            ) from exc
        self._ready = True

    # -- objects ---------------------------------------------------------------------------
    def object_path(self, object_hash: str) -> Path:
        """Where an object with this content hash lives."""
        return self.objects / object_hash[:2] / object_hash

    def has_object(self, object_hash: str) -> bool:
        """True when the object exists (not verified)."""
        return self.object_path(object_hash).exists()

    def staging_path(self, suffix: str = "") -> Path:
        """A fresh path under ``tmp/`` for a cacher to write to."""
        self.prepare()
        return self.tmp / f"{uuid.uuid4().hex}{suffix}"

    def ingest(self, staged: Path) -> tuple[str, int, str]:
        """Hash a staged file or folder and publish it as an object; returns (hash, size, kind).

        Identical content is stored once: when the object exists already, the staged
        copy is discarded.
        """
        kind = "dir" if staged.is_dir() else "file"
        digest, size = (_hash_tree(staged) if kind == "dir" else (hash_file(staged), staged.stat().st_size))
        target = self.object_path(digest)
        if target.exists():
            _remove(staged)
            return digest, size, kind
        target.parent.mkdir(parents=True, exist_ok=True)
        _make_read_only(staged)
        try:
            os.rename(staged, target)
        except OSError:
            if not target.exists():  # a concurrent writer published the same content: fine
                raise
            _remove(staged)
        return digest, size, kind

    def verified_path(self, record: ArtifactRecord, *, stage: str = "", param_set: str = "") -> Path:
        """The object's path after checking its content hash.

        Raises:
            CorruptObjectError: the object is missing or its content changed.
        """
        path = self.object_path(record.object)
        where = f"artifact {record.name!r}" + (f" of stage {stage!r} [{param_set}]" if stage else "")
        if not path.exists():
            raise CorruptObjectError(f"{where}: stored object {record.object[:12]} is missing from {self.objects}.")
        actual = _hash_tree(path)[0] if record.kind == "dir" else hash_file(path)
        if actual != record.object:
            raise CorruptObjectError(
                f"{where}: stored object {record.object[:12]} is corrupt (content hash is now {actual[:12]})."
            )
        return path

    def object_is_intact(self, object_hash: str) -> bool:
        """True when the (file) object exists and still matches its hash."""
        path = self.object_path(object_hash)
        return path.is_file() and hash_file(path) == object_hash

    def discard_object(self, object_hash: str) -> None:
        """Delete an object (a corrupt one, or garbage)."""
        path = self.object_path(object_hash)
        if path.exists():
            quarantine = self.staging_path(".discard")
            os.rename(path, quarantine)
            _remove(quarantine)

    # -- key records -----------------------------------------------------------------------
    def _key_path(self, key: str) -> Path:
        return self.keys / key[:2] / f"{key}.json"

    def get_record(self, key: str) -> KeyRecord | None:
        """The record stored under ``key``, or None (unreadable records count as absent)."""
        try:
            text = self._key_path(key).read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read key record {key[:12]} in {self.keys}: {exc}") from exc
        try:
            return KeyRecord.from_json(text)
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning("key record %s is damaged (%s); the stage will run again", key[:12], exc)
            return None

    def put_record(self, record: KeyRecord) -> None:
        """Publish a key record atomically."""
        self._write_atomic(self._key_path(record.key), record.to_json())

    def drop_record(self, key: str) -> None:
        """Forget a key (its objects stay until garbage collection)."""
        self._key_path(key).unlink(missing_ok=True)

    def records(self) -> Iterator[KeyRecord]:
        """Every key record in the store."""
        if not self.keys.is_dir():
            return
        for path in sorted(self.keys.glob("*/*.json")):
            try:
                yield KeyRecord.from_json(path.read_text())
            except (OSError, ValueError, TypeError, KeyError):
                logger.warning("skipping damaged key record %s", path)

    # -- refs: the last execution of (stage, param set) ----------------------------------------
    def _ref_path(self, stage: str, param_set: str) -> Path:
        return self.refs / stage / f"{hash_struct(['Ref', param_set])[:24]}.json"

    def get_ref(self, stage: str, param_set: str) -> dict[str, Any] | None:
        """The key parts of the last execution of ``stage`` for ``param_set``."""
        try:
            return json.loads(self._ref_path(stage, param_set).read_text())
        except (OSError, ValueError):
            return None

    def put_ref(self, stage: str, param_set: str, parts: Mapping[str, Any]) -> None:
        """Remember the key parts of the latest execution."""
        self._write_atomic(self._ref_path(stage, param_set), json.dumps(parts, sort_keys=True, default=str))

    # -- working folders -----------------------------------------------------------------
    def log_path(self, run_id: str, node_id: str) -> Path:
        """Where a node's captured output goes for a run (``runs/<run>/logs/<node>.log``)."""
        safe = "".join(c if c.isalnum() or c in "-_.@[],=" else "_" for c in node_id)
        return self.root / "runs" / run_id / "logs" / f"{safe}.log"

    def attempt_dir(self, stage: str, key: str) -> Path:
        """A persistent working folder for (stage, key), kept across failed attempts."""
        path = self.attempts / stage / key[:16]
        path.mkdir(parents=True, exist_ok=True)
        return path

    def scratch_dir(self) -> Path:
        """A fresh, private scratch folder under ``tmp/`` (the caller removes it)."""
        self.prepare()
        return Path(tempfile.mkdtemp(prefix="scratch-", dir=self.tmp))

    def clean_tmp(self, older_than: float = 24 * 3600) -> None:
        """Remove staging leftovers of killed processes older than ``older_than`` seconds."""
        if not self.tmp.is_dir():
            return
        cutoff = time.time() - older_than
        for entry in self.tmp.iterdir():
            try:
                if entry.lstat().st_mtime < cutoff:
                    _remove(entry)
            except OSError:
                continue

    def write_json(self, path: Path, text: str) -> None:
        """Publish a small JSON record at ``path`` (inside the store) atomically."""
        self._write_atomic(path, text)

    def _write_atomic(self, path: Path, text: str) -> None:
        self.prepare()
        staged = self.tmp / f"{uuid.uuid4().hex}.json"
        try:
            staged.write_text(text)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, path)
        except OSError as exc:
            staged.unlink(missing_ok=True)
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}. Is the disk full?") from exc


def _hash_tree(folder: Path) -> tuple[str, int]:
    entries = []
    size = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            size += stat.st_size
            entries.append([path.relative_to(folder).as_posix(), hash_file(path), bool(stat.st_mode & 0o111)])
    return hash_struct(["Tree", entries]), size


def _make_read_only(path: Path) -> None:
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for item in paths:
        mode = item.stat().st_mode
        os.chmod(item, mode & ~0o222 if item.is_file() else mode)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for item in path.rglob("*"):
            if item.is_dir():
                os.chmod(item, 0o755)
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except PermissionError:
            os.chmod(path, 0o644)
            path.unlink(missing_ok=True)
