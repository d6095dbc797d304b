"""Filesystem helpers for stored objects: tree hashing, read-only files, robust removal."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from .hashing import hash_file, hash_struct

__all__ = ["hash_tree", "make_read_only", "remove", "write_atomic"]


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path``'s content atomically (a temp file beside it, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.write_text(text)
    os.replace(staged, path)


def hash_tree(folder: Path) -> tuple[str, int]:
    """Content hash and total size of a folder (relative paths, file hashes, exec bits, empty folders).

    An empty folder is an entry of its own, so two folders that differ only by one hash
    differently (a folder holding files is implied by their paths).
    """
    entries: list[list[Any]] = []
    size = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            size += stat.st_size
            entries.append([path.relative_to(folder).as_posix(), hash_file(path), bool(stat.st_mode & 0o111)])
        elif path.is_dir() and not any(path.iterdir()):
            entries.append([path.relative_to(folder).as_posix(), "empty folder"])
    return hash_struct(["Tree", entries]), size


def make_read_only(path: Path) -> None:
    """Drop write permission from a file or every file of a folder."""
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for item in paths:
        if item.is_file():
            os.chmod(item, item.stat().st_mode & ~0o222)


def remove(path: Path) -> None:
    """Remove a file or folder, read-only or not."""
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
