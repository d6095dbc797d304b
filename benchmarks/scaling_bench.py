"""The scaling benchmark's machinery: sizes, one measured `experiment run`, verdicts.

:class:`Bench` writes the project (``scaling_projects.py``) and runs ``experiment run ... --json``
in it, each time on a fresh store, under a process-tree monitor (``proctree.py``) that also
measures the load other processes put on the machine. See ``scaling.py`` for what is measured.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from map import run_watched
from scaling_projects import write_project

__all__ = ["EXPERIMENT", "QUICK", "REPO", "Bench", "Config", "Measured", "Raw", "Row", "best", "judged",
           "log", "mean_stage", "others", "outputs", "ray_available", "times"]

REPO = Path(__file__).resolve().parent.parent
EXPERIMENT = [sys.executable, "-m", "orchestrator"]


@dataclass(frozen=True)
class Config:
    """Sizes and repeats."""

    stages: int = 20
    stage_cpu: float = 0.5
    sweep_repeats: int = 3
    tiny_stages: int = 1000
    tiny_repeats: int = 3
    ray_repeats: int = 2
    s3_stages: int = 100
    big_mib: int = 256
    quiet_wait: float = 10.0
    max_others: float = 0.3  # a run during which other processes used more cores is "disturbed"
    attempts: int = 5  # runs per measurement at most, to get a clean one
    timeout: float = 900.0


QUICK = Config(stages=8, stage_cpu=0.25, sweep_repeats=1, tiny_stages=200, tiny_repeats=1, ray_repeats=1,
               s3_stages=20, big_mib=64, quiet_wait=3.0, attempts=2, timeout=300.0)


@dataclass(frozen=True)
class Measured:
    """One `experiment run`: its own seconds, wall seconds, the tree's CPU, others' load, its summary."""

    run: float
    wall: float
    cpu: float
    others: float
    summary: dict


@dataclass(frozen=True)
class Raw:
    """The sweep's work without orchestrator: seconds sequentially, in a pool of 2, on a LocalCluster of 2."""

    sequential: float
    pool: float
    dask: float
    others: float


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    measurement: str
    ours: str
    baseline: str
    theirs: str
    ratio: str
    target: str
    verdict: str  # "pass", "FAIL", "noisy" or "-"
    others: str


def log(message: str) -> None:
    """Progress goes to stderr; the table alone goes to stdout."""
    sys.stderr.write(f"[scaling] {message}\n")
    sys.stderr.flush()


class Bench:
    """The generated project, and `experiment run` in it with a fresh store each time."""

    def __init__(self, work: Path, config: Config) -> None:
        self.work = work
        self.config = config
        sweeps = {"sweep": config.stages, "tiny": config.tiny_stages, "s3tiny": config.s3_stages}
        self.root = write_project(work / "project", sweeps, config.big_mib)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
        self.env.update(PYTHONHASHSEED="0", RAY_USAGE_STATS_ENABLED="0")
        self.count = 0

    def fresh(self, name: str) -> Path:
        self.count += 1
        return self.work / f"{name}-{self.count}"

    def run(self, params: str, *args: str, store: str | None = None, env: dict[str, str] | None = None,
            netns: bool = False, keep: bool = False) -> Measured:
        """`experiment run PARAMS ARGS --json` on a fresh store (or ``store``); fails loudly."""
        cache = store or str(self.fresh("store"))
        command = [*EXPERIMENT, "run", params, "--json", "--cache-dir", cache, *args]
        if netns:  # Ray binds the machine's address unless only loopback exists
            command = ["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {shlex.join(command)}"]
        done = run_watched(command, cwd=self.root, env={**self.env, **(env or {})}, timeout=self.config.timeout,
                           quiet=self.config.quiet_wait)
        try:
            summary = json.loads(done.stdout[done.stdout.index("{"):])
        except ValueError:
            summary = {}
        if not keep and store is None:
            shutil.rmtree(cache, ignore_errors=True)
        if not done.ok or summary.get("status") != "succeeded":
            failed = [n.get("error") for n in summary.get("nodes", []) if n.get("error")]
            raise RuntimeError(f"experiment run {params} {' '.join(args)}: {failed[:1] or done.tail()}")
        return Measured(summary["seconds"], done.seconds, done.monitor.tree_cpu, done.monitor.others_cpu, summary)

    def raw(self, spin_n: int) -> Raw:
        """The same spins without orchestrator (``raw_baseline.py``): a loop, a pool of 2, a LocalCluster of 2."""
        done = run_watched([sys.executable, "raw_baseline.py", str(spin_n), str(self.config.stages)], cwd=self.root,
                           env=self.env, timeout=self.config.timeout, quiet=self.config.quiet_wait)
        if not done.ok:
            raise RuntimeError(f"raw baseline: {done.tail()}")
        seconds = json.loads(done.stdout.strip().splitlines()[-1])
        return Raw(seconds["sequential"], seconds["pool"], seconds["dask"], done.monitor.others_cpu)

    def clean(self, measure: Callable[[], Measured]) -> Measured:
        """The first run during which others used <= max_others cores (else the fastest of the attempts)."""
        runs: list[Measured] = []
        while len(runs) < self.config.attempts:
            runs.append(measure())
            if runs[-1].others <= self.config.max_others:
                return runs[-1]
            log(f"  disturbed: other processes used {runs[-1].others:.2f} cores; measuring again")
        return min(runs, key=lambda m: m.run)


def best(runs: list[Measured], max_others: float) -> Measured:
    """The fastest clean run, else the fastest."""
    clean = [r for r in runs if r.others <= max_others]
    return min(clean or runs, key=lambda m: m.run)


def judged(ok: bool, ours: Measured, base: Measured | None, max_others: float) -> str:
    """pass / FAIL, or "noisy" when load from other processes may have decided the verdict.

    Load only slows a run down: a pass stands when the run whose slowness could have made it
    (the baseline) was clean, a failure when our run was clean.
    """
    disturbed = base if ok else ours
    if disturbed is not None and disturbed.others > max_others:
        return "noisy"
    return "pass" if ok else "FAIL"


def outputs(m: Measured) -> dict[str, dict]:
    return {n["param_set"]: n["outputs"] for n in m.summary["nodes"]}


def mean_stage(m: Measured) -> float:
    nodes = m.summary["nodes"]
    return sum(n["seconds"] for n in nodes) / max(1, len(nodes))


def times(m: Measured) -> str:
    return f"{m.run:.2f} s (wall {m.wall:.2f} s)"


def others(*runs: Measured) -> str:
    return " / ".join(f"{r.others:.2f}" for r in runs)


def ray_available() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    if importlib.util.find_spec("ray") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
