"""Files a stage reads that are not part of its key, seen through Python's audit hooks.

A stage that opens ``data/labels.csv`` itself depends on that file, but the key cannot see
it: edit the file and the stage stays cached. While a stage runs, every ``open`` event
(``open()``, ``io.open``, ``os.open``; so numpy, pandas, torch and PIL reading a path too) is
noted; afterwards the files that were read, and are not the store's, the stage's own scratch,
the interpreter's, an installed package's, the system's, a declared data param's, an input
artifact's or a file the stage wrote itself, are reported: the run warns once per stage,
``explain`` lists them, and ``run --strict-data`` fails the stage.

Reads by child processes (a ``subprocess``, a torchrun script, a DataLoader worker) are not
seen. The hook is installed once per process (an audit hook cannot be removed) and costs a
function call per ``open`` while no stage is watched.
"""

from __future__ import annotations

import contextlib
import functools
import os
import site
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["Watch", "watching"]

_SYSTEM = ("/proc", "/sys", "/dev", "/etc", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/run", "/var/lib",
           "/var/cache", "/opt/conda")
_CODE_SUFFIXES = (".py", ".pyc", ".pyi", ".so", ".pth", ".pyd")
_ACTIVE: Watch | None = None
_INSTALLED = False


class Watch:
    """The files opened while one stage ran: ``reads`` (in order) and what it wrote first."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, bool]] = []  # (path as given, for writing?) in the cwd of the moment
        self.cwd = os.getcwd()

    def undeclared(self, ignore: Iterable[str | os.PathLike[str]], root: Path) -> list[str]:
        """The files read and not covered by ``ignore`` (folders or files), relative to ``root`` where inside."""
        if not any(not writing for _, writing in self.opened):
            return []  # (most stages read no file themselves: nothing to resolve)
        ignored = tuple(_prefix(p) for p in ignore) + _interpreter_paths()
        written: set[str] = set()
        found: dict[str, None] = {}
        for given, writing in self.opened:
            path = os.path.normpath(os.path.join(self.cwd, given))
            if writing:
                written.add(path)
                continue
            if path in written or path.endswith(_CODE_SUFFIXES) or (path + os.sep).startswith(ignored):
                continue
            if path.startswith(tuple(s + os.sep for s in _SYSTEM)) or not os.path.isfile(path):
                continue
            found.setdefault(path, None)
        base = str(root.resolve()) + os.sep
        return [p[len(base):] if p.startswith(base) else p for p in found]


def _prefix(path: str | os.PathLike[str]) -> str:
    return os.path.normpath(os.path.abspath(os.fspath(path))) + os.sep


@functools.lru_cache(maxsize=1)
def _interpreter_paths() -> tuple[str, ...]:
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()}
    paths.update(v for k, v in sysconfig.get_paths().items() if k in ("stdlib", "platstdlib", "purelib", "platlib"))
    user = site.getusersitepackages() if hasattr(site, "getusersitepackages") else ""
    home = os.path.expanduser("~")
    paths.update(p for p in (user, os.path.join(home, ".cache"), os.path.join(home, ".config"),
                             os.path.join(home, ".local")) if p)
    return tuple(_prefix(p) for p in paths if p)


def _hook(event: str, args: tuple[object, ...]) -> None:
    watch = _ACTIVE
    if watch is None or event != "open" or not args:
        return
    path = args[0]
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        return  # a file descriptor
    mode = args[1] if len(args) > 1 else None
    flags = args[2] if len(args) > 2 else 0
    if isinstance(mode, str):
        writing = any(c in mode for c in "wax+")
    else:
        writing = isinstance(flags, int) and (flags & os.O_ACCMODE) != os.O_RDONLY
    watch.opened.append((path, writing))


@contextlib.contextmanager
def watching() -> Iterator[Watch]:
    """Note every file opened in this process for the block's duration."""
    global _ACTIVE, _INSTALLED
    if not _INSTALLED:
        sys.addaudithook(_hook)
        _INSTALLED = True
    watch = Watch()
    outer, _ACTIVE = _ACTIVE, watch
    try:
        yield watch
    finally:
        _ACTIVE = outer
