"""The artifact store on an fsspec URL (``s3://bucket/prefix``, ``gs://``...), with a local cache.

Publishing is crash-safe without rename (S3 has none): objects are content-addressed and
written with an exclusive create, so a key is either absent or complete; records are
single PUTs, which readers see whole. Objects are streamed to and from local files (a 2 GB
checkpoint is never held in memory) and kept in a size-bounded local read-through cache,
so a machine downloads each object once. Folder objects travel as uncompressed tar files.

Connection settings come from the usual environment (``AWS_ENDPOINT_URL``, credentials)
or, as JSON, from ``$ORCHESTRATOR_STORAGE_OPTIONS`` (passed to fsspec).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import CorruptObjectError, StoreError
from ..keys.hashing import hash_struct
from ..settings import env_json, env_number
from .base import ArtifactRecord, Store
from .localfs import make_read_only, remove

logger = logging.getLogger(__name__)

__all__ = ["RemoteStore"]

LOCAL_ENV = "ORCHESTRATOR_LOCAL_CACHE"
SIZE_ENV = "ORCHESTRATOR_LOCAL_CACHE_SIZE"
OPTIONS_ENV = "ORCHESTRATOR_STORAGE_OPTIONS"
DEFAULT_SIZE = 20 * 1024**3
CHUNK = 16 * 1024 * 1024  # transfer block: bounds memory per upload/download


def _precondition_failed(exc: OSError) -> bool:
    """Whether S3 refused an exclusive create (``If-None-Match: *``) because the key exists: 412.

    s3fs turns that answer into FileExistsError only when the server names the condition; others
    (SeaweedFS, some MinIO versions) leave an ``EINVAL`` OSError caused by the botocore error.
    """
    response = getattr(exc.__cause__, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in ("PreconditionFailed", "412") or (exc.errno == errno.EINVAL and "pre-condition" in str(exc))


class RemoteStore(Store):
    """A store on any fsspec filesystem; ``root`` is this machine's local working folder."""

    def __init__(self, url: str, local: Path | None = None) -> None:
        import fsspec

        options: dict[str, Any] = env_json(OPTIONS_ENV, {}, what="a JSON object of fsspec storage options")
        options.setdefault("use_listings_cache", False)
        options.setdefault("skip_instance_cache", True)
        self.url = url.rstrip("/")
        try:
            self.fs, self.base = fsspec.core.url_to_fs(self.url, **options)
        except (ImportError, ValueError) as exc:
            raise StoreError(f"cannot open the store {url}: {exc}. Fix: pip install s3fs (or the fsspec "
                             "package for that URL scheme).") from exc
        default = Path(os.environ.get(LOCAL_ENV, "~/.cache/orchestrator")).expanduser()
        super().__init__(local or default / hash_struct(["Remote", self.url])[:16])
        self.cache = self.root / "objects"
        self.limit = int(env_number(SIZE_ENV, DEFAULT_SIZE, what="a size of the local cache in bytes", integer=True))
        self._usage: int | None = None  # bytes in the local cache, measured once then tracked

    def _full(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    # -- primitives ----------------------------------------------------------------------
    def read_text(self, rel: str) -> str | None:
        try:
            return self.fs.cat_file(self._full(rel)).decode()  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {self.url}/{rel}: {exc}") from exc

    def write_text(self, rel: str, text: str) -> None:
        try:
            self.fs.pipe_file(self._full(rel), text.encode())
        except OSError as exc:
            raise StoreError(f"cannot write {self.url}/{rel}: {exc}") from exc

    def create_exclusive(self, rel: str, text: str) -> bool:
        try:
            with self.fs.open(self._full(rel), "xb") as handle:
                handle.write(text.encode())
        except FileExistsError:
            return False
        except OSError as exc:
            # the key existed when we wrote (then it may be gone already: a lease released since)
            if _precondition_failed(exc) or self.fs.exists(self._full(rel)):
                return False
            raise StoreError(f"cannot create {self.url}/{rel}: {exc}") from exc
        return True

    def list_names(self, rel_dir: str) -> list[str]:
        try:
            entries = self.fs.ls(self._full(rel_dir), detail=False)
        except FileNotFoundError:
            return []
        return [str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries]

    def delete(self, rel: str) -> None:
        try:
            self.fs.rm_file(self._full(rel))
        except FileNotFoundError:
            pass

    # -- objects ---------------------------------------------------------------------------
    def _object(self, object_hash: str) -> str:
        return self._full(f"objects/{object_hash[:2]}/{object_hash}")

    def _cached(self, object_hash: str) -> Path:
        return self.cache / object_hash[:2] / object_hash

    def has_object(self, object_hash: str) -> bool:
        return bool(self.fs.exists(self._object(object_hash)))

    def _publish(self, staged: Path, object_hash: str) -> None:
        upload = staged
        if staged.is_dir():
            upload = self.workspace.staging_path(".tar")
            with tarfile.open(upload, "w") as archive:
                archive.add(staged, arcname=".")
        try:
            with open(upload, "rb") as source, \
                    self.fs.open(self._object(object_hash), "xb", block_size=CHUNK) as target:
                shutil.copyfileobj(source, target, CHUNK)
        except (FileExistsError, OSError) as exc:
            if not self.has_object(object_hash):
                raise StoreError(f"cannot upload object {object_hash[:12]} to {self.url}: {exc}") from exc
        finally:
            if upload is not staged:
                upload.unlink(missing_ok=True)
        self._keep(staged, object_hash)

    def _keep(self, path: Path, object_hash: str) -> None:
        """Move a local copy into the read-through cache."""
        target = self._cached(object_hash)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            remove(path)
            return
        os.rename(path, target)
        if self._usage is None:
            self._usage = sum(size for _, size, _ in self._entries())
        else:
            self._usage += _size(target)
        if self._usage > self.limit:
            self._evict(keep=target)

    def local_object(self, object_hash: str, kind: str = "file") -> Path:
        target = self._cached(object_hash)
        if target.exists():
            os.utime(target)  # most recently used
            return target
        self.prepare()
        staged = self.workspace.staging_path(".download")
        try:  # ranged reads into a local file: memory stays at one chunk, whatever the object's size
            with self.fs.open(self._object(object_hash), "rb", block_size=CHUNK, cache_type="none") as remote, \
                    open(staged, "wb") as local:
                shutil.copyfileobj(remote, local, CHUNK)
        except FileNotFoundError as exc:
            raise CorruptObjectError(f"stored object {object_hash[:12]} is missing from {self.url}.") from exc
        if kind == "dir":
            folder = self.workspace.staging_path(".dir")
            with tarfile.open(staged) as archive:
                archive.extractall(folder, filter="data")
            staged.unlink()
            staged = folder
        make_read_only(staged)
        self._keep(staged, object_hash)
        return target

    def verified_path(self, record: ArtifactRecord, *, stage: str = "", param_set: str = "") -> Path:
        try:
            return super().verified_path(record, stage=stage, param_set=param_set)
        except CorruptObjectError:
            cached = self._cached(record.object)
            if not cached.exists():
                raise
            logger.warning("local copy of %s is damaged; downloading it again", record.object[:12])
            remove(cached)
            return super().verified_path(record, stage=stage, param_set=param_set)

    def object_entries(self) -> Iterator[tuple[str, int, float]]:
        for path, info in self.fs.find(self._full("objects"), detail=True).items():
            modified = info.get("LastModified") or info.get("mtime") or 0
            stamp = modified.timestamp() if hasattr(modified, "timestamp") else float(modified)
            yield str(path).rsplit("/", 1)[-1], int(info.get("size", 0)), stamp

    def discard_object(self, object_hash: str) -> None:
        remove(self._cached(object_hash))
        try:
            self.fs.rm_file(self._object(object_hash))
        except FileNotFoundError:
            pass

    def _entries(self) -> list[tuple[float, int, Path]]:
        return [(entry.stat().st_mtime, _size(entry), entry)
                for prefix in self.cache.glob("*") for entry in prefix.iterdir()]

    def _evict(self, keep: Path) -> None:
        """Drop least recently used local copies until the cache fits its size limit.

        ``keep``, the copy just added, stays even when it alone is over the limit: it is
        about to be read (evicting it would only mean downloading it again).
        """
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        for _, size, entry in sorted(entries):
            if total <= self.limit:
                break
            if entry == keep:
                continue
            remove(entry)
            total -= size
        self._usage = total


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
