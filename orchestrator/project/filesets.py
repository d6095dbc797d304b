"""``files()``: an artifact made of the files matching a glob, tracked by their content."""

from __future__ import annotations

import glob as globbing
import sys
from pathlib import Path
from typing import Any

from ..errors import DefinitionError
from ..keys.hashing import hash_struct
from .declaration import Stage
from .decorators import stage

__all__ = ["FileList", "files", "list_files", "source_digest"]


def list_files(root: Path, pattern: str) -> list[Path]:
    """The files under ``root`` matching ``pattern`` (``**`` recurses), sorted, absolute."""
    base = root if not Path(pattern).is_absolute() else Path("/")
    matches = globbing.glob(str(base / pattern), recursive=True)
    return sorted(Path(m).resolve() for m in matches if Path(m).is_file())


class FileList(list):  # type: ignore[type-arg]
    """The paths of a ``files()`` artifact; ``digest`` covers their content.

    Because the digest is stored with the list, editing a file changes the artifact's
    hash, so stages that read the files rerun even though the paths are the same.
    """

    digest: str = ""

    def __reduce__(self) -> Any:
        return (_file_list, (list(self), self.digest))


def _file_list(paths: list[Path], digest: str) -> FileList:
    result = FileList(paths)
    result.digest = digest
    return result


def files(pattern: str, *, name: str, allow_empty: bool = False) -> Stage:
    """Declare an artifact ``name``: the sorted list of files matching ``pattern``.

    ``pattern`` is relative to the project root (``"data/raw/**/*.jsonl"``). The artifact's
    key covers each file's path, size and content hash (memoized by size and mtime, so a
    rerun over unchanged files does not reread them); map stages over it cache per file, and
    the plan says which files were added, removed or changed. A pattern that matches nothing
    fails the stage, naming the pattern, unless ``allow_empty=True``.

    Example::

        raw_docs = files("data/raw/**/*.jsonl", name="raw_docs")

        @stage(inputs=["raw_docs"], outputs=["docs"], map_over="raw_docs")
        def parse(raw_docs: Path): ...
    """
    caller = sys._getframe(1).f_globals.get("__name__", __name__)

    def list_matching(ctx):  # type: ignore[no-untyped-def]
        found = list_files(ctx.project_root, pattern)
        if not found and not allow_empty:
            raise DefinitionError(f"files({pattern!r}, name={name!r}) matches no file under {ctx.project_root}. "
                                  "Fix: correct the pattern (relative to the project root), add the files, or pass "
                                  "allow_empty=True to accept an empty list.")
        return _file_list(found, source_digest(ctx.project_root, pattern, ctx.store))

    list_matching.__module__ = caller
    list_matching.__qualname__ = list_matching.__name__ = f"files_{name}"
    return stage(outputs=[name], name=name, glob=pattern, cachers={name: "pickle"})(list_matching)


def source_digest(root: Path, pattern: str, store: Any) -> str:
    """A digest of the files matching ``pattern``: paths, sizes and content hashes (memoized)."""
    from ..store.filehashes import FileHashes

    memo = FileHashes(store)
    entries = [[str(p), p.stat().st_size, memo.hash(p)] for p in list_files(root, pattern)]
    memo.save()
    return hash_struct(["Files", pattern, entries])
