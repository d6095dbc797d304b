"""A copy of the project's code taken when jobs are submitted, for executors whose jobs wait in a queue.

A SLURM job may start hours after it was submitted; by then the stage it runs may have been
edited. With ``snapshot = true`` the jobs import the project's code from a copy taken at
submission: they run exactly the code the keys were computed for, whatever is edited in the
meantime. The copy holds the project's Python files and the other small files beside them
(a ``version.txt`` read at import), not data, the store or virtual environments, and is
named by its content, so unchanged code is copied once.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..keys.hashing import hash_file, hash_struct

__all__ = ["snapshot"]

SKIP_DIRS = frozenset({"cache", "__pycache__", "node_modules", "site-packages", "build", "dist"})
LARGEST = 1 << 20  # files beside the code larger than this are data, not code


def snapshot(project_root: Path, into: Path) -> Path:
    """Copy the code of ``project_root`` under ``into`` (once per content); returns the copy's root."""
    files = sorted(_code_files(project_root, into))
    digest = hash_struct(["Snapshot", [[p.as_posix(), hash_file(project_root / p)] for p in files]])
    target = into / digest[:16]
    if target.is_dir():
        return target
    staging = into / f".{digest[:16]}.{os.getpid()}"
    for relative in files:
        destination = staging / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project_root / relative, destination)
    staging.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(staging, target)
    except OSError:  # another run took the same snapshot first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _code_files(root: Path, into: Path) -> list[Path]:
    found: list[Path] = []
    skip = into.resolve()
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS
                   and not (here / d / "pyvenv.cfg").exists() and (here / d).resolve() != skip]
        has_code = any(n.endswith(".py") for n in names)
        for name in names:
            path = here / name
            if name.endswith(".py") or name == "pyproject.toml" or (
                    has_code and here != root and not name.startswith(".") and path.stat().st_size <= LARGEST):
                found.append(path.relative_to(root))
    return found
