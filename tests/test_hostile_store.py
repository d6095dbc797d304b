"""Hostile cache layouts: something else where the store keeps a file or a folder, and read-only stores.

Every test drives the real `experiment` command on a real store (issue #15, guarantees 7 and 12).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import EXPERIMENT, Project

from orchestrator.store.local import LocalStore

BIG = ("--set", "n=3000")  # outputs big enough for object files of their own (not kept inline)


def _numbers_object(project: Project) -> Path:
    """The object file of make_numbers' ``numbers`` (a file of its own, not an inline copy)."""
    store = LocalStore(project.root / "cache")
    record = next(r for r in store.records() if r.stage == "make_numbers")
    assert record.outputs["numbers"].data is None
    return store.object_path(record.outputs["numbers"].object)


def _occupy(path: Path, kind: str, elsewhere: Path) -> None:
    """Put a folder, a FIFO or a symbolic link to a folder where the file ``path`` was."""
    os.chmod(path, 0o644)
    path.unlink()
    if kind == "dir":
        path.mkdir()
        (path / "stray.txt").write_text("not an object")
    elif kind == "fifo":
        os.mkfifo(path)  # opening it for reading would block until a writer comes: none will
    else:
        elsewhere.mkdir()
        (elsewhere / "keep.txt").write_text("outside the store")
        path.symlink_to(elsewhere, target_is_directory=True)


def _is_regular(path: Path) -> bool:
    return stat.S_ISREG(path.lstat().st_mode)


HOSTILE = ["dir", "fifo", "link"]
WORDS = {"dir": "is a folder where a file should be", "fifo": "is a named pipe (FIFO) where a file should be",
         "link": "is a symbolic link to a folder where a file should be"}


@pytest.mark.parametrize("kind", HOSTILE)
def test_something_else_where_an_object_belongs_is_broken_set_aside_and_recomputed(project, tmp_path, kind):
    project.run_json("base", *BIG)
    project.ran()
    path = _numbers_object(project)
    _occupy(path, kind, tmp_path / "elsewhere")
    found = project.experiment("cache", "verify", check=1, timeout=30).stdout  # a FIFO must not block it
    assert "BROKEN  make_numbers [base] numbers" in found and WORDS[kind] in found, found
    report = json.loads(project.experiment("cache", "verify", "--json", check=1, timeout=30).stdout)
    assert [p["artifact"] for p in report["problems"]] == ["numbers"]
    project.experiment("cache", "verify", "--repair", timeout=30)
    assert not os.path.lexists(path)  # set aside
    if kind == "link":
        assert (tmp_path / "elsewhere" / "keep.txt").read_text() == "outside the store"  # only the link went
    project.run_json("base", *BIG)
    assert project.ran() == ["make_numbers"]
    assert _is_regular(path)
    assert json.loads(project.experiment("cache", "verify", "--json").stdout)["problems"] == []


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("how", ["consumer", "force"])
def test_a_run_replaces_something_else_where_an_object_belongs(project, tmp_path, kind, how):
    """The consumer's load finds it corrupt and the producer reruns; ``--force`` of the producer replaces it."""
    project.run_json("base", *BIG)
    project.ran()
    path = _numbers_object(project)
    _occupy(path, kind, tmp_path / "elsewhere")
    if how == "consumer":
        summary = project.run_json("base", *BIG, "--set", "scale=2")  # double_all reruns: it loads numbers
        assert project.ran()[:2] == ["make_numbers", "double_all"]
    else:
        summary = project.run_json("base", *BIG, "--force", "make_numbers")
        assert project.ran() == ["make_numbers"]
    assert summary["status"] == "succeeded"
    assert _is_regular(path)
    assert json.loads(project.experiment("cache", "verify", "--json").stdout)["problems"] == []


DISPOSABLE = ["tmp", "leases", "attempts"]


@pytest.mark.parametrize("folder", [*DISPOSABLE, "keys", "objects", "maps"])
def test_a_file_where_a_store_folder_belongs_is_named_with_its_fix(project, folder):
    project.run_json("base", *BIG)
    path = project.root / "cache" / folder
    shutil.rmtree(path, ignore_errors=True)
    path.write_text("in the way")
    error = project.experiment("run", "base", *BIG, check=1).stderr
    assert f"{path} is a file, not a folder" in error, error
    assert "disk" not in error and "--cache-dir" not in error and "Traceback" not in error
    fix = f"Fix: remove it (rm {path})" if folder in DISPOSABLE else "Fix: experiment cache verify --repair"
    assert fix in error, error
    found = project.experiment("cache", "verify", check=1)
    assert f"(store) [-] {folder}: {path} is a file, not a folder" in found.stdout, found.stdout
    assert "Traceback" not in found.stderr
    project.experiment("cache", "verify", "--repair")  # moves it aside, under cache/damaged/
    assert (project.root / "cache" / "damaged" / folder).read_text() == "in the way"
    project.run_json("base", *BIG)
    assert json.loads(project.experiment("cache", "verify", "--json").stdout)["problems"] == []


def _read_only_mount_works(folder: Path) -> bool:
    probe = subprocess.run(["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && ! touch "$0/probe"',
                            str(folder)], capture_output=True, timeout=30)
    return probe.returncode == 0 and not (folder / "probe").exists()


def _tree(root: Path) -> dict[str, tuple[int, float]]:
    """Every entry under ``root`` with its size and modification time."""
    found = {}
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        found[str(path.relative_to(root))] = (info.st_size, info.st_mtime)
    return found


@pytest.fixture
def read_only(project: Project, tmp_path: Path) -> Iterator[list[str]]:
    """A command prefix to run `experiment` on the project's store (once it exists) made read-only, for real.

    As root, permission bits stop nothing: the cache folder is bind-mounted read-only in a mount
    namespace of the command's own. Otherwise, the command drops the write bits first (restored after).
    """
    cache = project.root / "cache"
    if os.geteuid() != 0:
        yield ["sh", "-c", 'chmod -R a-w "$0" && exec "$@"', str(cache), *EXPERIMENT]
        subprocess.run(["chmod", "-R", "u+w", str(cache)], check=True)
        return
    (tmp_path / "probe").mkdir()
    if shutil.which("unshare") is None or not _read_only_mount_works(tmp_path / "probe"):
        pytest.skip("cannot mount a folder read-only here (unshare -m, mount --bind -o ro)")
    yield ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(cache), *EXPERIMENT]


def test_read_only_commands_work_on_a_read_only_store(project, read_only):
    run_id = project.run_json("base", *BIG)["run_id"]
    project.damage("make_numbers", "numbers", lambda data: data[:5])  # something for verify to find
    before = _tree(project.root / "cache")

    def experiment(*args: str, code: int = 0) -> str:
        proc = subprocess.run([*read_only, *args], cwd=project.root, env=project.env(), capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == code, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    assert [r["id"] for r in json.loads(experiment("runs", "--json"))] == [run_id]
    shown = json.loads(experiment("show", run_id[:12], "--json"))
    assert shown["status"] == "succeeded" and {e["stage"] for e in shown["executions"]} >= {"make_numbers", "total"}
    assert json.loads(experiment("show", "last", "--json"))["id"] == run_id
    assert "make_numbers" in experiment("lineage", "numbers")
    assert {r["artifact"] for r in json.loads(experiment("cache", "ls", "--json"))} >= {"numbers", "doubled"}
    report = json.loads(experiment("cache", "verify", "--json", code=1))
    assert [p["artifact"] for p in report["problems"]] == ["numbers"]
    assert _tree(project.root / "cache") == before  # nothing created, nothing written (no WAL, no folder)
