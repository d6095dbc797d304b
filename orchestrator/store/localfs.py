"""Filesystem helpers for stored objects: tree hashing, read-only files, robust removal, what is where.

Nothing here opens a path before its type is known: a named pipe (FIFO) where a stored file
should be would block the reader forever, so :func:`entry_kind` (one ``stat``) comes first.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..keys.hashing import hash_file, hash_struct

__all__ = ["describe_entry", "entry_kind", "first_non_folder", "hash_tree", "make_read_only", "not_a_folder",
           "remove", "write_atomic"]

_KINDS = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"),
          (stat.S_ISCHR, "device"), (stat.S_ISBLK, "device"))
_WORDS = {"file": "a file", "dir": "a folder", "fifo": "a named pipe (FIFO)", "socket": "a socket",
          "device": "a device file", "missing": "nothing"}


def entry_kind(path: str | os.PathLike[str]) -> str:
    """What ``path`` is, symbolic links followed: ``file``, ``dir``, ``fifo``, ``socket``, ``device`` or ``missing``.

    One ``stat``; the path is never opened (so a FIFO cannot block the caller).
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    return next((kind for test, kind in _KINDS if test(mode)), "other")


def describe_entry(path: str | os.PathLike[str]) -> str:
    """``path``'s type in words for a message: "a file", "a named pipe (FIFO)", "a broken symbolic link"..."""
    kind = entry_kind(path)
    if not os.path.islink(path):
        return _WORDS.get(kind, "a special file")
    if kind == "missing":
        return "a broken symbolic link"
    return f"a symbolic link to {_WORDS.get(kind, 'a special file')}"


def first_non_folder(root: Path, path: Path) -> Path | None:
    """The first of ``root`` and the folders below it on the way to ``path`` (included) that exists, not as a folder.

    None when every existing one is a folder (or a link to one), or ``path`` is not under ``root``.
    """
    try:
        parts = Path(path).relative_to(root).parts
    except ValueError:
        return None
    chain = [Path(root)]
    for part in parts:
        chain.append(chain[-1] / part)
    for current in chain:
        kind = entry_kind(current)
        if kind == "missing" and not os.path.islink(current):
            return None
        if kind != "dir":
            return current
    return None


# the folders of a store: what each holds, and whether a stray file in its place can simply go
_FOLDERS: dict[str, tuple[str, bool]] = {
    "tmp": ("the staging files of running stages", True),
    "attempts": ("the working folders of failed attempts", True),
    "leases": ("the leases of running stages", True),
    "keys": ("the records of cached results", False),
    "objects": ("the stored objects", False),
    "maps": ("the per-item results of map stages", False),
}


def not_a_folder(path: Path, root: Path) -> StoreError:
    """The error for ``path`` (``root`` or below it) being something else than the folder the store keeps there."""
    quoted = shlex.quote(str(path))
    found = f"{path} is {describe_entry(path)}, not a folder"
    if Path(path) == Path(root):
        return StoreError(f"{found}: it is the artifact store. Fix: move it aside (mv {quoted} {quoted}.moved), "
                          "or pass --cache-dir DIR (or set ORCHESTRATOR_CACHE_DIR) to a folder.")
    parts = Path(path).relative_to(root).parts
    role, disposable = _FOLDERS.get(parts[0], ("its files", False))
    where = role if len(parts) == 1 else f"a share of {role}"
    if disposable:
        fix = f"remove it (rm {quoted}); it holds nothing the store needs."
    else:
        fix = (f"experiment cache verify --repair (it moves it aside, to {Path(root) / 'damaged'}; the next run "
               "recomputes what the folder should hold)")
    return StoreError(f"{found}: the artifact store keeps {where} there. Fix: {fix}")


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path``'s content atomically (a temp file beside it, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.write_text(text, encoding="utf-8")
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
    """Remove a file or folder, read-only or not (a symbolic link is removed, never what it points to)."""
    if path.is_dir() and not path.is_symlink():
        for item in (path, *path.rglob("*")):
            if item.is_dir() and not item.is_symlink():
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


NAME_BYTES = 200  # file names built from user strings stay well under the usual 255-byte limit


def bounded_name(text: str, limit: int = NAME_BYTES) -> str:
    """``text`` as a file name of at most ``limit`` UTF-8 bytes: itself, or a readable prefix and a hash.

    A 14-param grid names its sets ``sweep[lr=0.001,batch=64,...]``; a log file or a folder
    named after one must still be creatable (255 bytes on most file systems) and unique.
    """
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    from ..keys.hashing import hash_bytes

    digest = hash_bytes(data)[:16]
    prefix = data[: limit - len(digest) - 1].decode("utf-8", "ignore")  # (never half a character)
    return f"{prefix}-{digest}"
