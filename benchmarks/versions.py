"""Two versions of `experiment` side by side on the warm core workloads (code fingerprints' cost).

Usage (from the repository root)::

    .venv/bin/python benchmarks/versions.py BASELINE_COMMIT [--repeats 7]

The baseline commit is checked out into a temporary git worktree; both versions run the same
generated projects (``core_projects.py``) as ``python -m orchestrator run bench``, taking turns
run by run (this VM's speed drifts within minutes), with PYTHONPATH set to their tree. Each
store is filled by one cold run of that version first (keys differ between versions). Prints the
best warm seconds of each and their ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from core_projects import Shape, write_orchestrator_project
from measure import run_measured

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = {"1,000-stage chain, warm": Shape(1, 1000), "10,000-node DAG (100 x 100), warm": Shape(100, 100, True)}


def _run(tree: Path, root: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("ORCHESTRATOR_CACHE_DIR", None)
    measured = run_measured([sys.executable, "-m", "orchestrator", "run", "bench"], cwd=root, env=env, timeout=900)
    if not measured.ok:
        raise SystemExit(f"{tree}: {measured.tail()}")
    return measured.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", help="the commit to compare the working tree with")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        old = work / "baseline"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(old), args.baseline], cwd=REPO, check=True)
        try:
            print(f"| workload | baseline {args.baseline} (s) | working tree (s) | ratio |\n|---|---|---|---|")
            for title, shape in WORKLOADS.items():
                roots = {tree: write_orchestrator_project(work / f"{tree.name}-{shape.nodes}", shape)
                         for tree in (old, REPO)}
                for tree, root in roots.items():
                    _run(tree, root)  # fill the store
                best = {tree: min(_run(tree, root) for _ in range(1)) for tree, root in roots.items()}
                for _ in range(args.repeats - 1):
                    for tree, root in roots.items():
                        best[tree] = min(best[tree], _run(tree, root))
                print(f"| {title} | {best[old]:.3f} | {best[REPO]:.3f} | {best[REPO] / best[old]:.2f}x |", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, check=False)


if __name__ == "__main__":
    main()
