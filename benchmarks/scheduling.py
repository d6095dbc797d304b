"""Scheduling benchmarks (#18): one-node admission, a wide DAG under -j 2, a search against a grid.

Usage (from the repository root)::

    .venv/bin/python benchmarks/scheduling.py [--quick]

Every workload is a real project in a temporary folder, run through the ``experiment`` command
line as a fresh process (best of a few runs, wall clock). GPUs are a stub ``nvidia-smi`` on PATH
(4 GPUs) where a row says so. Prints one Markdown table: workload, measured, baseline, figure,
target, pass/fail. Exits 1 when a target is missed.

* **admission per node**: the same 1,000 independent no-op stages with ``-j 2`` on 4 stub GPUs, once
  asking for nothing and once for ``gpus=0.25`` (each reserved, handed out as ``CUDA_VISIBLE_DEVICES``
  and given back); the difference per node is what the scheduler adds. Target: under 2 ms.
* **wide DAG**: 1,000 independent 50 ms stages with ``-j 2``; ideal 25 s. Target: at least 90%.
* **search**: a 100-trial study on a trivial objective against the same 100 sets written as a
  grid (cold runs). The difference per trial is what Optuna and the feed add. Target: under 20 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = [sys.executable, "-m", "orchestrator"]

WIDE = '''
import time
from orchestrator import stage

def make(i):
    @stage(outputs=[f"out{i}"], name=f"s{i}", resources=RESOURCES)
    def s(seed: int = 0):
        time.sleep(SLEEP)
        return i
    return s

for i in range(NODES):
    globals()[f"s{i}"] = make(i)
'''

SEARCHED = '''
from orchestrator import stage

@stage(outputs=["data"])
def data():
    return list(range(10))

@stage(inputs=["data"], outputs=["score"])
def score(data, x: float, y: float, ctx):
    value = (x - 0.3) ** 2 + (y - 0.7) ** 2
    ctx.metric("loss", value, show=False)
    return value
'''


def _project(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def _fake_gpus(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = "\\n".join(f"{i}, 0, 81920, 0" for i in range(count))
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\nprintf '{rows}\\n'\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return folder


def _run(project: Path, *args: str, env: dict[str, str] | None = None) -> float:
    shutil.rmtree(project / "cache", ignore_errors=True)
    started = time.perf_counter()
    proc = subprocess.run([*EXPERIMENT, "run", *args], cwd=project, env=env or dict(os.environ),
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"experiment run {' '.join(args)} failed in {project}:\n{proc.stderr[-3000:]}")
    return seconds


def _best(repeats: int, measure: object) -> float:
    return min(measure() for _ in range(repeats))  # type: ignore[operator]


def admission(work: Path, nodes: int, repeats: int) -> tuple[float, float]:
    env = {**os.environ, "PATH": f"{_fake_gpus(work / 'bin', 4)}{os.pathsep}{os.environ['PATH']}"}
    plain = _project(work / "plain", {"stages/__init__.py": "", "params/p.yaml": "params: {}\n",
                                      "stages/s.py": WIDE.replace("RESOURCES", "None").replace("SLEEP", "0")
                                      .replace("NODES", str(nodes))})
    gpus = _project(work / "gpus", {"stages/__init__.py": "", "params/p.yaml": "params: {}\n",
                                    "stages/s.py": WIDE.replace("RESOURCES", '{"gpus": 0.25}').replace("SLEEP", "0")
                                    .replace("NODES", str(nodes))})
    base = _best(repeats, lambda: _run(plain, "p", "-j", "2", env=env))
    admitted = _best(repeats, lambda: _run(gpus, "p", "-j", "2", env=env))
    return base, admitted


def wide(work: Path, nodes: int, sleep: float) -> float:
    project = _project(work / "wide", {"stages/__init__.py": "", "params/p.yaml": "params: {}\n",
                                       "stages/s.py": WIDE.replace("RESOURCES", "None").replace("SLEEP", str(sleep))
                                       .replace("NODES", str(nodes))})
    return _run(project, "p", "-j", "2", "--workers", "0")


def search(work: Path, trials: int, repeats: int) -> tuple[float, float]:
    import random

    rng = random.Random(0)
    points = [(round(rng.random(), 6), round(rng.random(), 6)) for _ in range(trials)]
    sets = "".join(f"  - {{name: t{i}, x: {x}, y: {y}}}\n" for i, (x, y) in enumerate(points))
    grid = _project(work / "grid", {"stages/__init__.py": "", "stages/s.py": SEARCHED,
                                    "params/grid.yaml": f"sets:\n{sets}"})
    study = _project(work / "search", {"stages/__init__.py": "", "stages/s.py": SEARCHED, "params/search.yaml": (
        "search:\n  space:\n    x: {type: float, low: 0, high: 1}\n    y: {type: float, low: 0, high: 1}\n"
        f"  metric: loss\n  direction: minimize\n  trials: {trials}\n  pruner: none\n  seed: 0\n")})
    return (_best(repeats, lambda: _run(grid, "grid")), _best(repeats, lambda: _run(study, "search")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repeat (indicative only)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    nodes = 200 if args.quick else 1000
    repeats = 1 if args.quick else 3
    rows = []
    with tempfile.TemporaryDirectory(prefix="orchestrator-scheduling-") as tmp:
        work = Path(tmp)
        base, admitted = admission(work, nodes, repeats)
        per_node = (admitted - base) / nodes * 1000
        rows.append(("admission per node (4 stub GPUs, gpus=0.25, -j 2)", f"{admitted:.2f} s",
                     f"{base:.2f} s (-j 2, no resources)", f"{per_node:.2f} ms", "< 2 ms", per_node < 2))
        sleep = 0.05
        wall = wide(work, nodes, sleep)
        ideal = nodes * sleep / 2
        rows.append((f"wide DAG, {nodes} x 50 ms, -j 2", f"{wall:.2f} s", f"{ideal:.1f} s ideal",
                     f"{ideal / wall:.0%}", ">= 90%", ideal / wall >= 0.9))
        trials = 30 if args.quick else 100
        grid_s, search_s = search(work, trials, repeats)
        per_trial = (search_s - grid_s) / trials * 1000
        rows.append((f"search, {trials} trials (TPE) vs the same sets as a grid", f"{search_s:.2f} s",
                     f"{grid_s:.2f} s", f"{per_trial:.1f} ms per trial", "< 20 ms", per_trial < 20))
    print("| workload | measured | baseline | figure | target | pass |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row[:-1]) + f" | {'pass' if row[-1] else 'FAIL'} |")
    if args.json:
        args.json.write_text(json.dumps([list(r) for r in rows], indent=1))
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
