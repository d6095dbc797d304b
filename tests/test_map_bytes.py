"""A map's stored output is a function of its items' results only, not of how the work was scheduled."""

from __future__ import annotations

from conftest import statuses

STAGES = '''
from orchestrator import stage


@stage(outputs=["numbers"])
def numbers(count: int = 300):
    return list(range(count))


@stage(inputs=["numbers"], outputs=["labelled"], map_over="numbers")
def label(numbers):
    # constant strings and a shared dict key: objects one process shares across items
    # (tuples: the output is pickled, where a shared object is written once and referred to after)
    return ("even" if numbers % 2 == 0 else "odd", numbers, ("a", "b"))
'''


def _hash(summary: dict) -> str:
    node = next(n for n in summary["nodes"] if n["stage"] == "label")
    return next(iter(node["outputs"].values()))


def test_the_map_output_has_the_same_bytes_whatever_the_workers_shards_or_resume(make_project):
    proj = make_project({"stages/__init__.py": "", "stages/s.py": STAGES, "params/p.yaml": "params: {}\n"})
    inline = _hash(proj.run_json("p", "--workers", "0", "--cache-dir", "cache-a"))
    pooled = _hash(proj.run_json("p", "--workers", "2", "--cache-dir", "cache-b"))
    first = proj.run_json("p", "--workers", "2", "--shard", "1/2", "--cache-dir", "cache-c")
    assert statuses(first)[("label", "p")] == "sharded"
    sharded = _hash(proj.run_json("p", "--workers", "1", "--shard", "2/2", "--cache-dir", "cache-c"))
    assert inline == pooled == sharded
