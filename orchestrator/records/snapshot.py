"""A snapshot of the project's source files, kept in the store so a run can be reproduced later.

Each file of ``stages/``, ``params/`` and ``external/`` is published as a content-addressed
object (so unchanged files cost nothing from one run to the next) and the run records map
relative paths to object hashes. :func:`restore` writes a snapshot back out.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from ..keys.hashing import hash_file
from ..store.base import Store

logger = logging.getLogger(__name__)

__all__ = ["SOURCE_FOLDERS", "restore", "take_snapshot"]

SOURCE_FOLDERS = ("stages", "params", "external")
MAX_FILE_BYTES = 2 * 1024 * 1024  # bigger files are data, not source: recorded by hash only
MAX_FILES = 5000
SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".ipynb_checkpoints", "node_modules", ".venv"})
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".so", ".swp")


def _files(root: Path, folders: Iterable[Path]) -> Iterator[Path]:
    for folder in folders:
        if folder.is_file() and folder.resolve().is_relative_to(root.resolve()):  # a config a param file read
            yield root / folder.resolve().relative_to(root.resolve())
            continue
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(root).parts
            if any(part in SKIPPED_DIRS or part.startswith(".") for part in relative):
                continue
            if path.is_file() and not path.is_symlink() and not path.name.endswith(SKIPPED_SUFFIXES):
                yield path


def take_snapshot(store: Store, root: Path, folders: Iterable[Path] | None = None,
                  known: Iterable[str] = ()) -> dict[str, str]:
    """Publish the project's source files as objects; returns ``{relative path: object hash}``.

    ``known`` are object hashes already published (by the previous run's snapshot): they
    are not looked up in the store again. Files over :data:`MAX_FILE_BYTES` are recorded
    with their hash but not copied (their value is prefixed ``"unsaved:"``).
    """
    published = set(known)
    chosen = list(folders) if folders is not None else [root / name for name in SOURCE_FOLDERS]
    snapshot: dict[str, str] = {}
    for path in _files(root, dict.fromkeys(chosen)):
        if len(snapshot) >= MAX_FILES:
            logger.warning("source snapshot stopped at %d files; the rest of %s is not kept", MAX_FILES, root)
            break
        relative = path.relative_to(root).as_posix()
        try:
            digest = hash_file(path)
            if path.stat().st_size > MAX_FILE_BYTES:
                snapshot[relative] = f"unsaved:{digest}"
                continue
            if digest not in published and not store.has_object(digest):
                staged = store.workspace.staging_path()
                shutil.copyfile(path, staged)
                digest = store.ingest(staged)[0]
        except OSError as exc:  # a file vanishing mid-run is not worth failing the run for
            logger.debug("snapshot skipped %s: %s", path, exc)
            continue
        snapshot[relative] = digest
    return snapshot


def restore(store: Store, snapshot: Mapping[str, str], destination: Path) -> list[str]:
    """Write the files of ``snapshot`` under ``destination``; returns the paths not available."""
    missing = []
    for relative, digest in sorted(snapshot.items()):
        target = destination / relative
        if digest.startswith("unsaved:") or ".." in Path(relative).parts or not store.has_object(digest):
            missing.append(relative)
            continue
        source = store.local_object(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return missing
