"""Shared fixtures: small real projects in tmp_path and ways to run `experiment` on them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

EXPERIMENT = [sys.executable, "-m", "orchestrator"]

PIPELINE = '''
import os
from pathlib import Path

from orchestrator import aggregate, stage

from .helpers import OFFSET, double


def mark(name):
    with open(os.environ["RUNS_LOG"], "a") as handle:
        handle.write(name + "\\n")


@stage(outputs=["numbers"])
def make_numbers(n: int = 5):
    mark("make_numbers")
    return list(range(n))


@stage(inputs=["numbers"], outputs=["doubled"])
def double_all(numbers, scale: int = 1):
    mark("double_all")
    return [double(x) * scale for x in numbers]


@stage(inputs=["numbers"], outputs=["shifted"])
def shift(numbers):
    # shift every number by the offset
    mark("shift")
    return [x + OFFSET for x in numbers]


@stage(inputs=["doubled", "shifted"], outputs=["total"])
def total(doubled, shifted):
    mark("total")
    return sum(doubled) + sum(shifted)


@aggregate(inputs=["total"], outputs=["summary"])
def summary(total):
    mark("summary")
    return dict(sorted(total.items()))
'''

HELPERS = '''
OFFSET = 10


def double(x):
    """Twice x."""
    return 2 * x


def unused():
    return 0
'''

FILES = {
    "stages/__init__.py": "",
    "stages/helpers.py": HELPERS,
    "stages/pipeline.py": PIPELINE,
    "params/base.yaml": "params:\n  n: 5\n  scale: 1\n",
    "params/grid.yaml": "extends: base\ngrid:\n  scale: [1, 2]\n",
}


def write_files(root: Path, files: dict[str, str]) -> None:
    """Write ``files`` (relative path -> text, dedented) under ``root``."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


class Project:
    """A project in a temporary folder, driven through the real `experiment` command."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "runs.log"

    def write(self, files: dict[str, str]) -> None:
        write_files(self.root, files)

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.root / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, 1))

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["RUNS_LOG"] = str(self.log)
        for name in ("ORCHESTRATOR_CACHE_DIR", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "COLUMNS"):
            env.pop(name, None)  # (the color and terminal ones: output is the plain kind, as a pipe gets)
        return env

    def experiment(self, *args: str, check: int | None = 0, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `experiment ARGS` in the project; assert its exit code when ``check`` is not None."""
        proc = subprocess.run([*EXPERIMENT, *args], cwd=self.root, env=self.env(), capture_output=True,
                              text=True, timeout=timeout)
        if check is not None:
            assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        return proc

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start `experiment ARGS` in the background (output discarded)."""
        return subprocess.Popen([*EXPERIMENT, *args], cwd=self.root, env=env or self.env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_logged(self, marker: str, timeout: float = 60) -> None:
        """Wait until a stage has written ``marker`` to the stages' own log."""
        deadline = time.time() + timeout
        while time.time() < deadline and not (self.log.exists() and marker in self.log.read_text()):
            time.sleep(0.05)

    def kill_when_logged(self, marker: str, *args: str, env: dict[str, str] | None = None) -> None:
        """Start `experiment ARGS`, and SIGKILL it once a stage has logged ``marker``."""
        proc = self.start(*args, env=env)
        self.wait_logged(marker)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def damage(self, stage: str, artifact: str, change: Callable[[bytes], bytes]) -> str:
        """Apply ``change`` to the stored bytes of ``stage``'s ``artifact`` where they are kept.

        That is its object file, or for a small output the copy inside its key record.
        Returns ``"file"`` or ``"inline"``.
        """
        import base64

        from orchestrator.store.local import LocalStore

        store = LocalStore(self.root / "cache")
        record = next(r for r in store.records() if r.stage == stage)
        output = record.outputs[artifact]
        if output.data is None:
            path = store.object_path(output.object)
            where = "file"
        else:
            path = self.root / "cache" / "keys" / record.key[:2] / f"{record.key}.json"
            where = "inline"
        os.chmod(path, 0o644)
        if where == "file":
            path.write_bytes(change(path.read_bytes()))
        else:
            stored = json.loads(path.read_text())
            stored["outputs"][artifact]["data"] = base64.b64encode(change(base64.b64decode(output.data))).decode()
            path.write_text(json.dumps(stored))
        return where

    def run_json(self, *args: str, check: int | None = 0) -> dict:
        """`experiment run ARGS --json`, parsed."""
        proc = self.experiment("run", *args, "--json", check=check)
        return json.loads(proc.stdout)

    def ran(self) -> list[str]:
        """Stages executed since the last call (from the stages' own log), then clear it."""
        if not self.log.exists():
            return []
        names = self.log.read_text().split()
        self.log.unlink()
        return names


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The standard small pipeline (make_numbers -> double_all/shift -> total -> summary)."""
    root = tmp_path / "proj"
    root.mkdir()
    write_files(root, FILES)
    monkeypatch.setenv("RUNS_LOG", str(root / "runs.log"))
    monkeypatch.delenv("ORCHESTRATOR_CACHE_DIR", raising=False)
    return Project(root)


@pytest.fixture
def make_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], Project]:
    """A factory for custom projects."""
    monkeypatch.delenv("ORCHESTRATOR_CACHE_DIR", raising=False)

    def make(files: dict[str, str]) -> Project:
        root = tmp_path / "custom"
        root.mkdir(exist_ok=True)
        write_files(root, files)
        monkeypatch.setenv("RUNS_LOG", str(root / "runs.log"))
        return Project(root)

    return make


def statuses(summary: dict) -> dict[tuple[str, str], str]:
    """(stage, param_set) -> status from a --json run summary."""
    return {(n["stage"], n["param_set"]): n["status"] for n in summary["nodes"]}
