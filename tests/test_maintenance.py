"""Cache verification and the store's safety checks."""

from __future__ import annotations

import json
import os

from orchestrator.store.local import LocalStore


def test_verify_finds_corruption_names_it_and_repair_recomputes_only_it(project):
    project.run_json("base")
    project.ran()
    clean = json.loads(project.experiment("cache", "verify", "--json").stdout)
    assert clean["problems"] == [] and clean["artifacts"] == 5
    assert project.damage("shift", "shifted", lambda data: bytes([data[0] ^ 0xFF]) + data[1:]) == "inline"
    found = project.experiment("cache", "verify", check=1).stdout
    assert "BROKEN" in found and "shift [base] shifted" in found and "--repair" in found
    project.experiment("cache", "verify", "--repair")
    project.run_json("base")
    assert project.ran() == ["shift"]
    assert json.loads(project.experiment("cache", "verify", "--json").stdout)["problems"] == []


def test_truncated_and_deleted_objects_are_found(project):
    project.run_json("base", "--set", "n=3000")  # outputs big enough for files of their own
    store = LocalStore(project.root / "cache")
    assert project.damage("make_numbers", "numbers", lambda data: data[:3]) == "file"
    other = next(r for r in store.records() if r.stage == "double_all")
    store.discard_object(other.outputs["doubled"].object)
    report = json.loads(project.experiment("cache", "verify", "--json", check=1).stdout)
    assert {p["artifact"] for p in report["problems"]} == {"numbers", "doubled"}


def test_a_damaged_key_record_is_a_problem_and_repair_removes_it(project):
    project.run_json("base")
    store = LocalStore(project.root / "cache")
    record = next(r for r in store.records() if r.stage == "shift")
    path = project.root / "cache" / "keys" / record.key[:2] / f"{record.key}.json"
    os.chmod(path, 0o644)
    path.write_text(path.read_text()[:20])
    report = json.loads(project.experiment("cache", "verify", "--json", check=1).stdout)
    assert [p["key"] for p in report["problems"]] == [record.key]
    assert "is damaged" in report["problems"][0]["message"]
    project.experiment("cache", "verify", "--repair", "--json", check=None)
    assert not path.exists()
    assert json.loads(project.experiment("cache", "verify", "--json").stdout)["problems"] == []


def test_store_owned_by_another_user_is_refused(project, tmp_path):
    foreign = tmp_path / "foreign-cache"
    foreign.mkdir()
    if os.getuid() != 0:
        import pytest

        pytest.skip("changing a folder's owner needs root")
    os.chown(foreign, 12345, 12345)
    proc = project.experiment("run", "base", "--cache-dir", str(foreign), check=1)
    assert "belongs to user" in proc.stderr and "ORCHESTRATOR_TRUST_CACHE=1" in proc.stderr
    import subprocess

    from conftest import EXPERIMENT

    trusted = subprocess.run([*EXPERIMENT, "run", "base", "--cache-dir", str(foreign)], cwd=project.root,
                             env={**project.env(), "ORCHESTRATOR_TRUST_CACHE": "1"}, capture_output=True, text=True)
    assert trusted.returncode == 0, trusted.stderr


def test_stored_objects_are_read_only_and_follow_the_umask(project):
    project.run_json("base", "--set", "n=3000")  # outputs big enough for files of their own
    store = LocalStore(project.root / "cache")
    files = [a for r in store.records() for a in r.outputs.values() if a.data is None]
    assert len(files) == 3  # numbers, doubled, shifted; total and summary are kept in their records
    for artifact in files:
        mode = store.object_path(artifact.object).stat().st_mode & 0o777
        assert mode & 0o222 == 0
        umask = os.umask(0)
        os.umask(umask)
        assert mode & umask == 0


def test_no_shell_true_anywhere():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    offenders = [str(p) for folder in ("orchestrator", "stages", "external", "benchmarks")
                 for p in (root / folder).rglob("*.py")
                 if ".venvs" not in p.parts and re.search(r"shell\s*=\s*True", p.read_text())]
    assert offenders == []
