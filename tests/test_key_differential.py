"""Differential test of the cache key: whenever an edit changes a stage's result, its key changes.

Hypothesis generates small projects (``keygen.py``: helper graphs of constants, functions,
lambdas, closures, classes, imports in bodies, registries, across two modules) and one edit
of one number somewhere. Each version runs in a fresh interpreter that fingerprints the
stage and calls it. A changed result with an unchanged key is a stale cache hit: the test
fails. The opposite (the key changed, the result did not: a needless rerun) is counted and
reported; the slow variant's figure is recorded in docs/concepts.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import keygen
import pytest
from conftest import write_files
from hypothesis import HealthCheck, given, settings

DRIVER = """
import json, sys
from pathlib import Path
sys.path.insert(0, str(Path.cwd()))
from orchestrator.keys.fingerprint import Fingerprinter
import stages.s
fp = Fingerprinter(Path.cwd()).stage(stages.s.result.fn)
print(json.dumps([fp.digest, stages.s.result.fn()]))
"""

TALLY = {"examples": 0, "result_changed": 0, "needless": 0}


def _key_and_result(root: Path) -> tuple[str, object]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", DRIVER], cwd=root, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digest, result = json.loads(proc.stdout.strip().splitlines()[-1])
    return digest, result


def _check(spec: tuple) -> None:
    defs, uses, edited, number = spec
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        files = keygen.source(defs, uses)
        write_files(root, files)
        key_before, result_before = _key_and_result(root)
        changed = keygen.source(keygen.edit(defs, edited, number), uses)
        write_files(root, changed)
        key_after, result_after = _key_and_result(root)
    TALLY["examples"] += 1
    if result_after != result_before:
        TALLY["result_changed"] += 1
        assert key_after != key_before, (
            f"stale: the result went {result_before} -> {result_after} with the same key\n"
            + "\n".join(f"--- {p}\n{t}" for p, t in changed.items()))
    elif key_after != key_before:
        TALLY["needless"] += 1


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(keygen.projects())
def test_a_changed_result_always_changes_the_key(spec):
    _check(spec)


@pytest.mark.slow
@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(keygen.projects())
def test_a_changed_result_always_changes_the_key_many_projects(spec):
    _check(spec)


def teardown_module() -> None:
    if TALLY["examples"]:
        rate = TALLY["needless"] / max(1, TALLY["examples"] - TALLY["result_changed"])
        print(f"\nkey differential: {TALLY['examples']} edits, {TALLY['result_changed']} changed the result "
              f"(0 stale), {TALLY['needless']} reran needlessly ({rate:.0%} of the edits that changed nothing)")
