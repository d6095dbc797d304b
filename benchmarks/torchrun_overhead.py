"""What ``ctx.torchrun`` adds on top of a bare ``torchrun`` call of the same trivial script.

Usage (from the repository root)::

    .venv/bin/python benchmarks/torchrun_overhead.py [--repeats 5] [--json results.json]

The script joins a 2-process gloo group, runs one barrier and leaves. "bare" is
``python -m torch.distributed.run --standalone --nproc-per-node 2 --max-restarts 0 --log-dir D``
through ``subprocess.run``; "ctx.torchrun" is the orchestrator's call from a stage context
(loopback entry point, device choice, argv/env, supervised process tree, rank-prefixed
streaming into a log, resume lookup, output check) with the same script. They run in
alternating pairs, so a change in the machine's load hits both sides of a pair; the
overhead is the median of the per-pair differences. Target: < 0.5 s. Exits 1 when missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.engine.context import StageContext
from orchestrator.store.location import open_store

TARGET = 0.5
SCRIPT = """
import torch.distributed as dist
dist.init_process_group("gloo")
dist.barrier()
dist.destroy_process_group()
"""


def bare(script: Path, work: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "--max-restarts", "0", "--log-dir", str(work / "bare-logs"), str(script)]
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def orchestrated(script: Path, work: Path, n: int) -> float:
    ctx = StageContext(stage="bench", param_set="bench", params={}, seed=0, key=f"{n:064x}",
                       store=open_store(work / "store"), project_root=work)
    started = time.perf_counter()
    ctx.torchrun(script, nproc_per_node=2, on_output=lambda line: None)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="torchrun-bench-") as folder:
        work = Path(folder)
        script = work / "trivial.py"
        script.write_text(SCRIPT)
        bare(script, work)  # warm the page cache for both
        bare_times, ours = [], []
        for n in range(options.repeats):
            bare_times.append(bare(script, work))
            ours.append(orchestrated(script, work, n))
    differences = [o - b for o, b in zip(ours, bare_times)]
    overhead = statistics.median(differences)
    print(f"{'launch':<16}{'median s':>10}{'best s':>10}")
    for name, times in (("bare torchrun", bare_times), ("ctx.torchrun", ours)):
        print(f"{name:<16}{statistics.median(times):>10.2f}{min(times):>10.2f}")
    print(f"{'overhead':<16}{overhead:>+10.2f}{min(ours) - min(bare_times):>+10.2f}   (median of {options.repeats} "
          f"paired differences; target < {TARGET:.1f} s; {os.cpu_count()} cores)")
    if options.json:
        options.json.write_text(json.dumps({"bare": bare_times, "ctx_torchrun": ours, "overhead": overhead}, indent=1))
    return 0 if overhead < TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
