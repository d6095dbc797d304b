"""Where and with what a run ran: host, user, process, Python, key packages, git state.

Everything here is cheap (no heavy imports; package versions are read from the names of
the ``*.dist-info`` folders) and tolerant: a project outside git, or a machine without git,
simply records no commit.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

logger = logging.getLogger(__name__)

__all__ = ["GitState", "command_line", "git_state", "package_versions"]

# Distributions whose versions are worth recording (the ones installed are).
KEY_PACKAGES = (
    "orchestrator", "numpy", "pandas", "pyarrow", "scipy", "scikit-learn", "torch", "pytorch-lightning",
    "lightning", "torchvision", "jax", "tensorflow", "transformers", "xgboost", "lightgbm", "polars",
    "matplotlib", "cloudpickle", "xxhash", "click", "pyyaml",
)
MAX_DIFF_BYTES = 1_000_000
GIT_TIMEOUT = 10.0


@dataclass(frozen=True)
class GitState:
    """The git state of the project: commit, whether the tree was dirty, and the diff to HEAD."""

    commit: str = ""
    branch: str = ""
    dirty: bool = False
    diff: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {"commit": self.commit, "branch": self.branch, "dirty": self.dirty, "diff": self.diff}


def command_line(argv: list[str] | None = None) -> str:
    """The command that started this process, as the user would type it."""
    args = list(sys.argv if argv is None else argv)
    if not args:
        return ""
    program = os.path.basename(args[0])
    if program in ("experiment", "__main__.py") or args[0].endswith(os.path.join("orchestrator", "__main__.py")):
        return shlex.join(["experiment", *args[1:]])
    if args[0] in ("-c", ""):
        return shlex.join(["python", "-c", *args[1:]])
    return shlex.join(["python", *args])


def python_version() -> str:
    """``3.11.9 (cpython)``."""
    version = ".".join(str(n) for n in sys.version_info[:3])
    return f"{version} ({sys.implementation.name})"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def package_versions() -> dict[str, str]:
    """Versions of the installed :data:`KEY_PACKAGES`.

    Read from the names of the ``*.dist-info`` folders on ``sys.path`` (first one wins, as
    for imports): one directory listing per path entry instead of a metadata lookup per
    package, which matters for a CLI that records every run.
    """
    wanted = {_normalize(name): name for name in KEY_PACKAGES}
    versions: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for folder in names:
            if not folder.endswith((".dist-info", ".egg-info")):
                continue
            stem = folder.rsplit(".", 1)[0]
            name, _, version = stem.partition("-")
            key = wanted.get(_normalize(name))
            if key and version and key not in versions:
                versions[key] = version.split("-py", 1)[0]
    if "orchestrator" not in versions:  # e.g. run from a source tree
        from importlib import metadata

        try:
            versions["orchestrator"] = metadata.version("orchestrator")
        except metadata.PackageNotFoundError:
            pass
    return dict(sorted(versions.items()))


def _in_git(root: Path) -> bool:
    """Whether ``root`` is inside a git work tree (looked up on disk: no process started)."""
    if os.environ.get("GIT_DIR"):
        return True
    folder = root.resolve()
    return any((candidate / ".git").exists() for candidate in (folder, *folder.parents))


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, encoding="utf-8",
                              timeout=GIT_TIMEOUT, errors="replace", stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None


def git_state(root: Path) -> GitState:
    """The commit checked out at ``root``, whether tracked files changed, and the diff (capped).

    One ``git status`` call gives the commit, the branch and the dirty flag; a second one,
    only for a dirty tree, the diff.
    """
    if not _in_git(root):
        return GitState()
    status = _git(root, "status", "--porcelain=v2", "--branch", "--untracked-files=no")
    if status is None or status.returncode != 0:
        return GitState()
    commit = branch = ""
    dirty = False
    for line in status.stdout.splitlines():
        if line.startswith("# branch.oid "):
            commit = line.split(" ", 2)[2].strip()
        elif line.startswith("# branch.head "):
            branch = line.split(" ", 2)[2].strip()
        elif line and not line.startswith("#"):
            dirty = True
    if not commit or commit == "(initial)":
        return GitState(branch=branch, dirty=dirty)
    diff = ""
    if dirty:
        result = _git(root, "diff", "HEAD", "--no-color", "--no-ext-diff")
        diff = result.stdout if result and result.returncode == 0 else ""
        if len(diff) > MAX_DIFF_BYTES:
            diff = diff[:MAX_DIFF_BYTES] + "\n... (diff truncated)\n"
    return GitState(commit, branch, dirty, diff)
