"""`-j N`: each worker's thread pools get its share of the cores, not all of them."""

from __future__ import annotations

import os

STAGES = '''
import os
from orchestrator import stage


@stage(outputs=["a"])
def a():
    import torch
    return [os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()]


@stage(outputs=["b"])
def b():
    import torch
    return [os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()]
'''


def test_each_of_two_workers_gets_half_the_cores(make_project, monkeypatch):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    proj = make_project({"stages/__init__.py": "", "stages/s.py": STAGES, "params/p.yaml": "params: {}\n"})
    proj.run_json("p", "-j", "2")
    import orchestrator

    share = max(1, len(os.sched_getaffinity(0)) // 2)
    for artifact in ("a", "b"):
        assert orchestrator.load(artifact, params="p", project_dir=proj.root) == [str(share), share]
