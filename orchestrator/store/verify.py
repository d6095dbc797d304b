"""``experiment cache verify``: check the store's folders, and every stored artifact against its content hash.

It also checks what artifacts refer to: the files a value holds (``refs``) must be intact, and a
pickled value must not hold a path outside the store (an artifact written before paths were
stored, or a path that did not exist when it was written).

Nothing is opened before its type is known (a FIFO where an object belongs is reported, never read),
and without ``--repair`` nothing is written: verify works on a read-only store.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import CorruptObjectError, StoreError
from .base import Store, describe
from .inline import verified_bytes
from .localfs import not_a_folder
from .records import ArtifactRecord
from .storedpaths import paths_in_pickle

logger = logging.getLogger(__name__)

__all__ = ["Problem", "VerifyReport", "verify_store"]

SCAN_LIMIT = 256 * 2**20  # pickled artifacts up to this size are read for the paths they hold


@dataclass(frozen=True)
class Problem:
    """A stored artifact that is missing or does not match its hash."""

    stage: str
    param_set: str
    artifact: str
    key: str
    object: str
    message: str


@dataclass(frozen=True)
class VerifyReport:
    """What verification found."""

    records: int
    artifacts: int
    problems: tuple[Problem, ...]
    repaired: bool


def verify_store(store: Store, *, repair: bool = False,
                 progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Hash every object a key record points to; with ``repair``, forget the broken ones.

    Repairing drops the key records whose objects are bad (and the bad objects), so the
    next run recomputes exactly those stages; nothing else is touched. Something else where
    one of the store's folders belongs (a file where ``keys/`` should be) is a problem too,
    which repairing moves aside, under ``damaged/`` (the store itself stays where it is).
    """
    blocked = store.layout_problems(deep=True)
    problems = [_layout_problem(store, path) for path in blocked]
    for path in blocked if repair else ():
        if path != store.root:
            logger.info("moved %s aside to %s", path, _set_aside(store.root, path))
    records = artifacts = 0

    def damaged(key: str) -> None:
        problems.append(Problem("?", "?", "?", key, "", f"key record {key[:12]} is damaged (not a readable "
                                "record): the stage it describes runs again"))

    for record in store.records(on_damaged=damaged):
        records += 1
        for artifact in record.outputs.values():
            artifacts += 1
            try:
                if artifact.data is not None:  # kept in the key record: check it there, write no file
                    content: bytes | Path = verified_bytes(artifact, describe(artifact, record.stage, record.param_set))
                else:
                    content = store.verified_path(artifact, stage=record.stage, param_set=record.param_set)
            except CorruptObjectError as exc:
                problems.append(Problem(record.stage, record.param_set, artifact.name, record.key,
                                        artifact.object, str(exc).split(". Fix:")[0]))
                continue
            problems += [Problem(record.stage, record.param_set, artifact.name, record.key, "", message)
                         for message in _reference_problems(store, artifact, content)]
        if progress is not None:
            progress(records)
    if repair:
        for problem in problems:
            if not problem.key:  # (the store's folders: moved aside above)
                continue
            store.drop_record(problem.key)
            if problem.object:  # (has_object: False for a broken link, which discarding removes too)
                store.discard_object(problem.object)
            logger.info("forgot %s [%s] (%s): the next run recomputes it", problem.stage, problem.param_set,
                        problem.artifact)
    return VerifyReport(records, artifacts, tuple(problems), repair)


def _reference_problems(store: Store, artifact: ArtifactRecord, content: bytes | Path) -> list[str]:
    """What is wrong with the files an intact artifact refers to: stored ones missing or corrupt, and
    (pickled values) paths that point outside the store, which clean-up or another machine will not have."""
    found = [f"the file {ref[:12]} it holds is missing from the store or corrupt" for ref in artifact.refs
             if not store.object_is_intact(ref)]
    if artifact.cacher != "pickle" or artifact.kind != "file":
        return found
    if isinstance(content, Path):
        if content.stat().st_size > SCAN_LIMIT:
            return found
        content = content.read_bytes()
    root = store.root.resolve()
    for text in dict.fromkeys(paths_in_pickle(content)):
        path = Path(text) if Path(text).is_absolute() else Path.cwd() / text
        if not path.resolve().is_relative_to(root):
            state = "still there" if path.exists() else "gone now"
            found.append(f"holds the path {text}, which points outside the store ({state}): a run on another "
                         "machine or after clean-up cannot read it")
    return found


def _layout_problem(store: Store, path: Path) -> Problem:
    """Something else where a folder of the store belongs, as a problem (its path relative to the store)."""
    where = path.relative_to(store.root).as_posix() if path != store.root else "."
    message = str(not_a_folder(path, store.root)).split(" Fix:")[0]
    return Problem("(store)", "-", where, "", "", message)


def _set_aside(root: Path, path: Path) -> Path:
    """Move ``path`` to ``root/damaged/<its path under root>`` (stamped when taken); returns where it went."""
    target = root / "damaged" / path.relative_to(root)
    if os.path.lexists(target):
        target = target.with_name(f"{target.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, target)
    except OSError as exc:
        raise StoreError(f"cannot move {path} aside to {target}: {exc.strerror or exc}. Fix: make the store "
                         f"writable, or remove it yourself (rm -r {shlex.quote(str(path))}).") from exc
    return target
