"""The artifact store on S3: a real S3-compatible server on loopback, not a mock."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
from conftest import EXPERIMENT, statuses

s3fs = pytest.importorskip("s3fs")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    from s3server import S3Server

    try:
        server = S3Server(tmp_path_factory.mktemp("s3"))
    except FileNotFoundError as exc:
        pytest.skip(f"no S3 test server: {exc}")
    yield server
    server.stop()


@pytest.fixture
def bucket(s3, monkeypatch, tmp_path):
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ORCHESTRATOR_LOCAL_CACHE", str(tmp_path / "local-cache"))
    return s3.bucket(f"b{uuid.uuid4().hex[:12]}")


def test_run_on_s3_store_then_reuse(project, bucket):
    first = project.run_json("grid", "--cache-dir", bucket)
    assert first["status"] == "succeeded"
    project.ran()
    local = project.run_json("grid")  # the same hashes as a local store
    assert {(n["stage"], n["param_set"]): n["outputs"] for n in first["nodes"]} == \
           {(n["stage"], n["param_set"]): n["outputs"] for n in local["nodes"]}
    project.ran()
    again = project.run_json("grid", "--cache-dir", bucket)
    assert set(statuses(again).values()) == {"cached"}
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    assert fs.ls(bucket.removeprefix("s3://") + "/keys")


def test_store_primitives_and_exclusive_create(bucket, tmp_path):
    from orchestrator.store.location import open_store

    store = open_store(bucket, tmp_path / "local")
    assert store.read_text("x/a.json") is None
    store.write_text("x/a.json", "1")
    assert store.read_text("x/a.json") == "1" and store.list_names("x") == ["a.json"]
    assert store.create_exclusive("x/b.json", "first") and not store.create_exclusive("x/b.json", "second")
    assert store.read_text("x/b.json") == "first"
    staged = store.workspace.staging_path()
    staged.mkdir()
    (staged / "f.txt").write_text("in a folder")
    digest, _, kind = store.ingest(staged)
    assert kind == "dir"
    other = open_store(bucket, tmp_path / "other-machine")  # a second machine: nothing cached locally
    from orchestrator.store.base import ArtifactRecord

    path = other.verified_path(ArtifactRecord("d", "h", digest, "dir", "1", 0, "dir"))
    assert (path / "f.txt").read_text() == "in a folder"


def test_exclusive_create_of_a_key_released_at_once_is_refused_not_an_error(bucket, tmp_path, monkeypatch):
    from orchestrator.store.location import open_store

    store = open_store(bucket, tmp_path / "local")
    assert store.create_exclusive("leases/k.00000000.json", "holder")
    real_exists = store.fs.exists

    def released_meanwhile(path):  # the holder releases between our refused write and any second look
        store.delete("leases/k.00000000.json")
        return real_exists(path)

    monkeypatch.setattr(store.fs, "exists", released_meanwhile)
    assert store.create_exclusive("leases/k.00000000.json", "contender") is False  # it existed when we wrote


def test_concurrent_runs_on_s3_compute_shared_stage_once(project, bucket):
    env = {**project.env(), **{k: v for k, v in __import__("os").environ.items() if k.startswith(("AWS_", "ORCH"))}}
    procs = [subprocess.Popen([*EXPERIMENT, "run", "base", "--cache-dir", bucket, "--json"], cwd=project.root,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert sorted(project.ran()) == ["double_all", "make_numbers", "shift", "summary", "total"]
    hashes = {json.dumps([n["outputs"] for n in json.loads(o[0])["nodes"]]) for o in outs}
    assert len(hashes) == 1


@pytest.mark.parametrize("size_mb", [160, pytest.param(2048, marks=pytest.mark.slow)])
def test_big_artifact_moves_through_s3_without_being_held_twice(make_project, bucket, size_mb, tmp_path):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/big.py": f'''
            import numpy as np
            from orchestrator import stage

            @stage(outputs=["big"])
            def make():
                return np.ones({size_mb} * 1024 * 1024 // 8)

            @stage(inputs=["big"], outputs=["total"])
            def consume(big):
                return float(big.sum())
        ''',
        "params/p.yaml": "params: {}\n",
    })
    import os
    import shutil

    env = {**proj.env(), **{k: v for k, v in os.environ.items() if k.startswith(("AWS_", "ORCH"))}}
    # measure from a small wrapper process: a child forked from pytest itself would start its
    # peak-memory count at pytest's own size (vfork shares the parent's memory until exec)
    wrapper = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
               "_, status, usage = os.wait4(p.pid, 0); print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)")

    def peak_of(*args: str) -> float:
        proc = subprocess.run([sys.executable, "-c", wrapper, *EXPERIMENT, "run", "p", "--cache-dir", bucket, *args],
                              cwd=proj.root, env=env, capture_output=True, text=True, timeout=900)
        code, peak_kib = proc.stdout.split()
        assert code == "0", proc.stderr[-3000:]
        return int(peak_kib) / 1024

    stored = peak_of()  # make + upload, then consume from the local copy
    shutil.rmtree(tmp_path / "local-cache")  # a second machine: nothing cached locally
    loaded = peak_of("--force", "consume")  # download in blocks, verify, load
    # one copy of the array plus the interpreter and libraries; never two copies
    for peak_mb in (stored, loaded):
        assert peak_mb < 1.5 * size_mb + 150, f"peak {peak_mb:.0f} MB for a {size_mb} MB artifact"


def test_local_cache_stays_within_its_size_limit_but_keeps_what_it_just_fetched(bucket, tmp_path, monkeypatch):
    from orchestrator.store.base import ArtifactRecord
    from orchestrator.store.location import open_store

    monkeypatch.setenv("ORCHESTRATOR_LOCAL_CACHE_SIZE", "10000")
    writer = open_store(bucket, tmp_path / "writer")
    digests = []
    for fill, size in enumerate((4000, 4000, 4000, 25000)):  # the last one alone is over the limit
        staged = writer.workspace.staging_path()
        staged.write_bytes(bytes([fill]) * size)
        digests.append(writer.ingest(staged)[0])
    reader = open_store(bucket, tmp_path / "reader")  # a second machine
    for digest in digests[:3]:
        assert reader.verified_path(ArtifactRecord("a", "h", digest, "bytes", "1", 4000)).stat().st_size == 4000
    cached = [p for p in (tmp_path / "reader" / "objects").glob("*/*")]
    assert len(cached) == 2 and sum(p.stat().st_size for p in cached) <= 10000  # the oldest copy was evicted
    big = reader.verified_path(ArtifactRecord("b", "h", digests[3], "bytes", "1", 25000))
    assert big.exists() and big.stat().st_size == 25000  # usable, although alone over the limit


def test_a_path_input_of_a_small_output_on_s3_gets_a_real_file(make_project, bucket):
    """A small output lives in its key record; a stage that wants its file gets one, uploaded once."""
    proj = make_project({
        "stages/__init__.py": "",
        "stages/files.py": '''
            from pathlib import Path

            from orchestrator import stage


            @stage(outputs=["greeting"])
            def greet():
                return "hello from s3"


            @stage(inputs=["greeting"], outputs=["echo"])
            def echo(greeting: Path):
                return greeting.read_text()
        ''',
        "params/p.yaml": "params: {}\n",
    })
    first = proj.run_json("p", "--cache-dir", bucket)
    assert first["status"] == "succeeded"
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    greeting = next(n for n in first["nodes"] if n["stage"] == "greet")["outputs"]["greeting"]
    objects = [p.rsplit("/", 1)[-1] for p in fs.find(bucket.removeprefix("s3://") + "/objects")]
    records = [json.loads(fs.cat(p)) for p in fs.find(bucket.removeprefix("s3://") + "/keys")]
    stored = next(r["outputs"]["greeting"] for r in records if r["stage"] == "greet")
    assert stored["hash"] == greeting and stored["data"] and stored["object"] in objects  # written on demand
    code = ("import orchestrator, sys; "
            f"print(orchestrator.load('echo', params='p', cache_dir={bucket!r}, project_dir=sys.argv[1]))")
    loaded = subprocess.run([sys.executable, "-c", code, str(proj.root)], capture_output=True, text=True,
                            env=proj.env(), check=True)
    assert loaded.stdout.strip() == "hello from s3"
