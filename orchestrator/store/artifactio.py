"""Reading and writing artifacts: the one place where stage outputs become stored bytes and back.

``serialize_output`` turns what a stage returned into a staged file (or bytes small enough to
keep inside the key record, :mod:`orchestrator.store.inline`) with its cacher;
``publish_output`` hashes it into the store and returns its :class:`ArtifactRecord`;
``load_artifact`` verifies a stored artifact against its hash and loads it (or gives its path).
The worker, the map worker, ``RunResult.load`` and ``orchestrator.load`` all go through here.
"""

from __future__ import annotations

import errno
import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from ..cachers import Cacher, choose_cacher, get_cacher, streams
from ..errors import user_traceback
from ..keys.hashing import hash_bytes
from .base import Store, describe
from .inline import Spool, encode, verified_bytes
from .records import ArtifactRecord, artifact_hash
from .storedpaths import resolve_paths, store_paths

__all__ = ["OutputNotStored", "Staged", "load_artifact", "publish_output", "serialize_output"]


class OutputNotStored(Exception):
    """An output that could not be serialized or published; nothing partial was kept.

    ``kind`` is ``"outputs"`` (what the stage returned is wrong) or ``"cacher"`` (storing it failed).
    """

    def __init__(self, kind: str, message: str, exc_type: str = "", traceback: str = "") -> None:
        super().__init__(message)
        self.kind, self.message, self.exc_type, self.traceback = kind, message, exc_type, traceback


def load_artifact(store: Store, record: ArtifactRecord, *, as_path: bool, stage: str = "", param_set: str = "") -> Any:
    """Verify a stored artifact and load it (or return its path)."""
    value = _loaded(store, record, as_path=as_path, stage=stage, param_set=param_set)
    return resolve_paths(store, value, describe(record, stage, param_set)) if record.refs and not as_path else value


def _loaded(store: Store, record: ArtifactRecord, *, as_path: bool, stage: str, param_set: str) -> Any:
    if record.data is not None and not as_path:
        cacher = get_cacher(record.cacher)
        if streams(cacher):  # kept inside its key record: no file to open
            return cacher.read(io.BytesIO(verified_bytes(record, describe(record, stage, param_set))))
    path = store.verified_path(record, stage=stage, param_set=param_set)
    if as_path:
        return path
    return get_cacher(record.cacher).load(path)


@dataclass(frozen=True)
class Staged:
    """An output serialized by ``cacher``: a local staging file, or bytes small enough to keep inline;
    ``refs`` are the objects of the files it holds as paths."""

    cacher: Cacher
    content: Path | bytes
    refs: tuple[str, ...] = ()


def serialize_output(store: Store, name: str, obj: Any, declared: str | None) -> Staged:
    """Serialize one output with its cacher: to a local staging file, or to bytes when small (inline.py).

    With the pickle cacher, files the value holds as paths are stored first (:mod:`.storedpaths`).
    """
    if isinstance(obj, Path) and not obj.exists() and declared in (None, "file", "dir"):
        raise OutputNotStored("outputs", f"output {name!r} is the path {obj}, which does not exist. "
                                 "Fix: write the file (e.g. under ctx.scratch_dir) before returning its path.")
    cacher = get_cacher(declared) if declared else choose_cacher(obj)
    refs: tuple[str, ...] = ()
    if cacher.name == "pickle":
        try:
            obj, refs = store_paths(store, obj)
        except OSError as exc:
            raise _storage_failure(store, name, exc, f"holds a path whose file could not be stored: "
                                   f"{type(exc).__name__}: {exc}.") from exc
    staged = store.workspace.staging_path(cacher.extension)
    try:
        if cacher.kind == "file" and streams(cacher):
            with Spool(staged) as spool:
                cacher.write(obj, cast(IO[bytes], spool))  # a binary file, as io.RawIOBase
            if spool.inline is not None:
                return Staged(cacher, spool.inline, refs)
        else:
            cacher.save(obj, staged)
    except Exception as exc:
        _discard(staged)
        hint = "" if declared == "pickle" else f" Fix: declare cachers={{{name!r}: 'pickle'}} or return a supported type."
        raise _storage_failure(store, name, exc, f"({type(obj).__name__}) could not be stored with cacher "
                               f"{cacher.name!r}: {type(exc).__name__}: {exc}.{hint}") from exc
    return Staged(cacher, staged, refs)


def publish_output(store: Store, name: str, output: Staged) -> ArtifactRecord:
    """Hash a staged output and publish it to the store (small ones go into the key record)."""
    cacher, staged, refs = output.cacher, output.content, output.refs
    if isinstance(staged, bytes):
        digest = hash_bytes(staged)
        return ArtifactRecord(name=name, hash=artifact_hash(cacher.name, cacher.version, digest), object=digest,
                              cacher=cacher.name, cacher_version=cacher.version, size=len(staged),
                              data=encode(staged), refs=refs)
    try:
        digest, size, kind = store.ingest(staged)
    except Exception as exc:
        _discard(staged)
        raise _storage_failure(store, name, exc, f"could not be published to {store.url}: "
                               f"{type(exc).__name__}: {exc}.") from exc
    return ArtifactRecord(
        name=name,
        hash=artifact_hash(cacher.name, cacher.version, digest),
        object=digest,
        cacher=cacher.name,
        cacher_version=cacher.version,
        size=size,
        kind=kind,
        refs=refs,
    )


def _storage_failure(store: Store, name: str, exc: Exception, detail: str) -> OutputNotStored:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        message = (
            f"output {name!r}: the disk holding {store.root} is full. Nothing partial was kept. "
            "Fix: free space on that disk, or pass --cache-dir on a larger one."
        )
    elif isinstance(exc, FileNotFoundError) and not (Path(store.root) / "tmp").is_dir():
        message = (
            f"output {name!r} could not be stored: the store at {store.root} disappeared while the run was going "
            "(deleted, or its disk unmounted). Fix: run again; the store is created afresh and what it held is "
            "computed again."
        )
    else:
        message = f"output {name!r} {detail}"
    return OutputNotStored("cacher", message, type(exc).__name__, user_traceback(exc))


def _discard(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
