"""The user's project: its root, its config, and the stages its modules declare.

The root is the nearest folder (from the working directory up) holding a ``stages/``
folder or a ``pyproject.toml`` with a ``[tool.orchestrator]`` table. It goes first on
``sys.path`` so the project's own ``stages`` package is never shadowed by another one
installed elsewhere.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import pkgutil
import sys
import sysconfig
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LIBRARY_DIR, DefinitionError, ProjectError
from ..processes import process_started
from .declaration import Stage

_LIBRARY = Path(LIBRARY_DIR)

__all__ = ["Project", "find_project", "collect_stages"]

CACHE_ENV = "ORCHESTRATOR_CACHE_DIR"


@dataclass(frozen=True)
class Project:
    """A located project.

    Attributes:
        root: The project root folder.
        config: The ``[tool.orchestrator]`` table of its pyproject.toml (may be empty).
    """

    root: Path
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def params_dir(self) -> Path:
        """Where param files live (``params_dir`` in the config, default ``params/``)."""
        return self.root / str(self.config.get("params_dir", "params"))

    def cache_dir(self, override: str | os.PathLike[str] | None = None) -> Path | str:
        """The artifact store: ``override``, else $ORCHESTRATOR_CACHE_DIR, else config, else ``cache/``.

        A local folder comes back as an absolute Path; a URL (``s3://bucket/prefix``) as is.
        """
        chosen = str(override or os.environ.get(CACHE_ENV) or self.config.get("cache_dir") or "cache")
        if "://" in chosen and not chosen.startswith("file://"):
            return chosen
        path = Path(chosen.removeprefix("file://")).expanduser()
        return path if path.is_absolute() else (self.root / path)

    def activate(self) -> None:
        """Put the project root first on ``sys.path`` (idempotent)."""
        root = str(self.root)
        if sys.path[:1] == [root] and root in _ACTIVE:
            return  # done already, and nothing put another folder first since (every task calls this)
        if sys.path[:1] != [root]:
            if root in sys.path:
                sys.path.remove(root)
            sys.path.insert(0, root)
        _ACTIVE.clear()
        _ACTIVE.add(root)
        # a `stages` package imported from elsewhere would shadow the project's own
        inside = root.rstrip(os.sep) + os.sep
        for name in [m for m in sys.modules if m == "stages" or m.startswith("stages.")]:
            module_file = getattr(sys.modules[name], "__file__", None) or ""
            if module_file.startswith(inside):  # the common case, without a resolve() per module
                continue
            if module_file and not Path(module_file).resolve().is_relative_to(self.root):
                del sys.modules[name]


_ACTIVE: set[str] = set()  # the root this process last activated


def find_project(start: Path | None = None) -> Project:
    """Locate the project root from ``start`` (default: the working directory) upwards.

    Raises:
        ProjectError: when no folder up the tree looks like a project.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        config = _read_config(folder / "pyproject.toml")
        if config is not None or (folder / "stages").is_dir():
            return Project(folder, config or {})
    raise ProjectError(
        f"no orchestrator project found in {here} or its parents. Fix: run from a folder with a "
        "stages/ package, or add a [tool.orchestrator] table to its pyproject.toml."
    )


def _read_config(pyproject: Path) -> dict[str, Any] | None:
    if not pyproject.is_file():
        return None
    import tomllib

    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProjectError(f"{pyproject}: invalid TOML: {exc}") from exc
    table = data.get("tool", {}).get("orchestrator")
    return dict(table) if isinstance(table, dict) else None


def import_modules(project: Project, names: Iterable[str] | None) -> list[Any]:
    """Import the stage modules (default: every module of the project's ``stages`` package).

    In a long-lived process (a notebook), the project's modules are imported afresh when
    any of their files changed since they were imported: keys are computed from the source
    on disk, so the code that runs must be that source too.
    """
    project.activate()
    _forget_if_changed(project)
    if names is None:
        names = [str(project.config.get("stages", "stages"))]
    modules = _import_all(names)
    local = _project_modules(project)
    if _drop_ambiguous_bytecode(local):  # the code that ran may be older than its source: import afresh
        modules = _import_all(names)
        local = _project_modules(project)
    _IMPORTED.update({name: _stamp(path) for name, path in local.items()})
    return modules


def _import_all(names: Iterable[str]) -> list[Any]:
    modules = []
    for name in names:
        module = _import(name)
        modules.append(module)
        if hasattr(module, "__path__"):  # a package: import its submodules too
            for info in pkgutil.walk_packages(module.__path__, prefix=f"{module.__name__}."):
                modules.append(_import(info.name))
    return modules


def _drop_ambiguous_bytecode(local: Mapping[str, str]) -> bool:
    """Remove the bytecode of project modules that Python may have loaded although their source changed.

    Python trusts a timestamp ``.pyc`` whose recorded source mtime (whole seconds) and size match
    the source. One written in the same second as its source was saved cannot tell a later save in
    that second, of the same size (``lr = 0.1`` -> ``lr = 0.2``), from the source it compiled: the
    run would execute the old code under the new code's key. Such a ``.pyc``, when written
    before this process started, is removed, and the project's modules are dropped so that the
    caller imports them again from source, before any key is computed (their module-level code
    has then run twice). Returns whether it removed any.
    """
    started = process_started()
    ambiguous: list[str] = []
    for path in local.values():
        if not path.endswith(".py"):
            continue
        cached = importlib.util.cache_from_source(path)
        if _ambiguous(path, cached, started):
            ambiguous.append(cached)
    if not ambiguous:
        return False
    for cached in ambiguous:
        with contextlib.suppress(OSError):
            os.unlink(cached)
    for name in local:  # the project's modules (``_project_modules``): all of them, so none keeps an old one
        sys.modules.pop(name, None)
    importlib.invalidate_caches()
    return True


def _ambiguous(source: str, cached: str, started: float) -> bool:
    """A timestamp .pyc that Python accepts for ``source``, written in its mtime's second, before ``started``."""
    try:
        with open(cached, "rb") as handle:
            header = handle.read(16)  # magic, flags, source mtime (s), source size
        compiled, stat = os.stat(cached), os.stat(source)
    except OSError:
        return False
    if len(header) < 16 or header[:4] != importlib.util.MAGIC_NUMBER or int.from_bytes(header[4:8], "little"):
        return False  # not this Python's, or hash-based (checked by content)
    mtime, size = int.from_bytes(header[8:12], "little"), int.from_bytes(header[12:16], "little")
    if (mtime, size) != (int(stat.st_mtime) & 0xFFFFFFFF, stat.st_size & 0xFFFFFFFF):
        return False  # Python rejects it and compiles the source
    return int(compiled.st_mtime) == int(stat.st_mtime) and compiled.st_mtime < started


# project module -> (its file, (mtime_ns, size) when it was imported)
_IMPORTED: dict[str, tuple[str, tuple[int, int] | None]] = {}


def _stamp(path: str) -> tuple[str, tuple[int, int] | None]:
    try:
        stat = os.stat(path)
    except OSError:
        return path, None
    return path, (stat.st_mtime_ns, stat.st_size)


def installed_roots(root: Path) -> tuple[Path, ...]:
    """Where installed code lives (the standard library, site-packages, the interpreter's prefixes),
    leaving out any that hold the project itself."""
    paths = sysconfig.get_paths()
    roots = {Path(paths[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    return tuple(r for r in roots if not root.is_relative_to(r))


def is_project_file(path: Path, root: Path, installed: tuple[Path, ...]) -> bool:
    """Whether the resolved ``path`` is the project's own code: under ``root``, not this library, not installed
    (a virtualenv inside the project)."""
    return (path.is_relative_to(root) and not path.is_relative_to(_LIBRARY) and "site-packages" not in path.parts
            and not any(path.is_relative_to(r) for r in installed))


def _project_modules(project: Project) -> dict[str, str]:
    """Imported modules whose source is in the project (not in a virtualenv inside it)."""
    found = {}
    installed = installed_roots(project.root)
    prefix = str(project.root)
    for name, module in list(sys.modules.items()):
        filename = getattr(module, "__file__", None)
        if not filename:
            continue
        if os.path.isabs(filename) and not filename.startswith(prefix):  # cheap: most modules are elsewhere
            continue
        path = Path(filename).resolve()
        if is_project_file(path, project.root, installed):  # (not this library, when the project holds it)
            found[name] = str(path)
    return found


def _forget_if_changed(project: Project) -> None:
    """Drop every project module from ``sys.modules`` when one of their files changed since import."""
    changed = [path for path, stamp in _IMPORTED.values() if _stamp(path) != (path, stamp)]
    if not changed:
        return
    for path in changed:  # its bytecode may pass Python's check (same second, same size): drop it
        with contextlib.suppress(OSError, ValueError):
            os.unlink(importlib.util.cache_from_source(path))
    for name in _project_modules(project):
        del sys.modules[name]
    _IMPORTED.clear()
    importlib.invalidate_caches()


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise ProjectError(
                f"stage module {name!r} not found on the project path. Fix: check stages: in the "
                "param file, or create the module."
            ) from exc
        raise ProjectError(
            f"stage module {name!r} imports {exc.name!r}, which is not installed. "
            f"Fix: pip install {exc.name} (or remove the import)."
        ) from exc
    except DefinitionError:
        raise  # it names the user's line and the fix already
    except Exception as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        user = [f for f in frames if not f.filename.startswith((LIBRARY_DIR, "<frozen"))] or frames
        frame = user[-1]
        raise ProjectError(
            f"importing stage module {name!r} raised {type(exc).__name__}: {exc} "
            f"({frame.filename}:{frame.lineno}). Fix that line."
        ) from exc


def collect_stages(modules: Iterable[Any]) -> dict[str, Stage]:
    """Collect the Stage objects defined in ``modules``, by name.

    Raises:
        DefinitionError: two different stages share a name.
    """
    stages: dict[str, Stage] = {}
    for module in modules:
        for value in vars(module).values():
            if not isinstance(value, Stage):
                continue
            other = stages.get(value.name)
            if other is not None and other is not value:
                raise DefinitionError(
                    f"two stages are named {value.name!r} ({other.module}.{other.qualname} and "
                    f"{value.module}.{value.qualname}). Fix: rename one, or pass @stage(name=...)."
                )
            stages[value.name] = value
    return stages
