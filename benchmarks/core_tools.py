"""The two tools under test, driven through their command lines on generated projects.

Every timed run is a fresh process, exactly the command a user types. What a run did is
checked outside the timing: `experiment plan --json` must find every node cached after a
run, and curifactory must have written (cold) or left untouched (warm) one pickle per node.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from measure import Measurement, run_measured

__all__ = ["CURIFACTORY", "Curifactory", "Experiment", "Outcome"]

CURIFACTORY = ["curifactory==0.20.5"]  # the baseline, pinned so results stay comparable


@dataclass(frozen=True)
class Outcome:
    """A measured run plus what checking it found (empty ``problem``: it did what it should)."""

    run: Measurement
    problem: str = ""

    @property
    def seconds(self) -> float:
        """The run's wall-clock seconds."""
        return self.run.seconds

    @property
    def cpu_seconds(self) -> float:
        """The run's CPU seconds (user + system)."""
        return self.run.cpu_seconds

    @property
    def ok(self) -> bool:
        """True when the run exited 0 and its check passed."""
        return self.run.ok and not self.problem

    def describe(self) -> str:
        """Why it is not ok, in one line."""
        if self.run.timed_out:
            return f"killed after {self.run.seconds:.0f} s timeout"
        if not self.run.ok:
            return f"exit {self.run.returncode}: {self.run.tail()}"
        return self.problem


def _clean_env(drop: tuple[str, ...]) -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE (set on some CI machines) would recompile every module of an
    # editable install on each start: users' machines keep .pyc files, so the runs do too
    env = {k: v for k, v in os.environ.items() if k not in (*drop, "PYTHONDONTWRITEBYTECODE")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Experiment:
    """`experiment` from the venv running this harness."""

    name = "experiment"

    def __init__(self) -> None:
        self.command = str(Path(sys.executable).parent / "experiment")
        self.env = _clean_env(("ORCHESTRATOR_CACHE_DIR",))

    def help(self, cwd: Path) -> Measurement:
        """``experiment --help``."""
        return run_measured([self.command, "--help"], cwd=cwd, env=self.env)

    def reset(self, root: Path) -> None:
        """Empty the project's store (the next run is cold)."""
        shutil.rmtree(root / "cache", ignore_errors=True)

    def run(self, root: Path, *, nodes: int, cold: bool, timeout: float) -> Outcome:
        """``experiment run bench`` in ``root``; then check every node is stored."""
        measured = run_measured([self.command, "run", "bench"], cwd=root, env=self.env, timeout=timeout)
        if not measured.ok:
            return Outcome(measured)
        header = measured.stdout.split("\n", 4)[:4]
        if not cold and any(" ran " in line for line in header):
            return Outcome(measured, "a fully cached run executed stages")
        return Outcome(measured, self._check_all_cached(root, nodes, timeout))

    def _check_all_cached(self, root: Path, nodes: int, timeout: float) -> str:
        plan = run_measured([self.command, "plan", "bench", "--json"], cwd=root, env=self.env, timeout=timeout)
        if not plan.ok:
            return f"experiment plan failed: {plan.tail()}"
        actions = [entry["action"] for entry in json.loads(plan.stdout)]
        cached = actions.count("CACHED")
        if len(actions) != nodes or cached != nodes:
            return f"after the run, plan shows {cached} of {len(actions)} nodes cached (expected {nodes})"
        return ""


class Curifactory:
    """curifactory's `experiment` command from its private venv (logs and reports off)."""

    name = "curifactory"
    flags = ["--no-log", "--no-report"]  # its cheapest configuration

    def __init__(self, bin_dir: Path, *, no_dag: bool = False) -> None:
        self.command = str(bin_dir / "experiment")
        self.python = str(bin_dir / "python")
        self.env = _clean_env(("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"))
        self.extra = ["--no-dag"] if no_dag else []
        if no_dag:
            self.name = "curifactory --no-dag"

    def version(self) -> str:
        """The installed curifactory version."""
        code = "import importlib.metadata as m; print(m.version('curifactory'))"
        found = run_measured([self.python, "-c", code], cwd=Path.cwd(), env=self.env)
        return found.stdout.strip() or "unknown"

    def help(self, cwd: Path) -> Measurement:
        """``experiment --help`` of curifactory."""
        return run_measured([self.command, "--help"], cwd=cwd, env=self.env)

    def reset(self, root: Path) -> None:
        """Empty the project's cache and run registry (the next run is cold)."""
        for folder in ("data", "logs", "reports"):
            shutil.rmtree(root / folder, ignore_errors=True)

    def run(self, root: Path, *, nodes: int, cold: bool, timeout: float) -> Outcome:
        """``experiment bench -p bench``; then check one pickle per node, new (cold) or untouched (warm)."""
        before = self._pickles(root)
        command = [self.command, "bench", "-p", "bench", *self.flags, *self.extra]
        measured = run_measured(command, cwd=root, env=self.env, timeout=timeout)
        if not measured.ok:
            return Outcome(measured)
        output = measured.stdout + measured.stderr
        if "Traceback" in output:  # curifactory logs some failures and still exits 0
            error = next((line for line in reversed(output.splitlines()) if "Error" in line), "a traceback")
            return Outcome(measured, f"exit 0 but failed: {error.strip()}; {len(self._pickles(root))} of "
                                     f"{nodes} stage outputs stored")
        after = self._pickles(root)
        if len(after) != nodes:
            return Outcome(measured, f"{len(after)} stage outputs stored, expected {nodes}")
        if not cold and after != before:
            return Outcome(measured, "a fully cached run rewrote stage outputs")
        return Outcome(measured)

    @staticmethod
    def _pickles(root: Path) -> dict[str, int]:
        folder = root / "data" / "cache"
        if not folder.is_dir():
            return {}
        return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.pkl")}
