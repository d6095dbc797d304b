"""Leases on a local store: hard links to one holder file per run, renewed by one write."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from orchestrator.store.leases import Leases
from orchestrator.store.local import LocalStore


def _entries(root: Path) -> dict[str, os.stat_result]:
    folder = root / "leases"
    return {p.name: p.stat() for p in folder.iterdir()} if folder.exists() else {}


def test_a_runs_leases_are_links_to_its_holder_which_one_beat_renews(tmp_path):
    store = LocalStore(tmp_path)
    with Leases(store, ttl=0.8) as leases:  # a beat every 0.2 s
        assert leases.acquire("a" * 32) and leases.acquire("b" * 32)
        entries = _entries(tmp_path)
        holder = f"holder-{leases.owner}.json"
        assert set(entries) == {holder, f"{'a' * 32}.00000000.json", f"{'b' * 32}.00000000.json"}
        assert {s.st_ino for s in entries.values()} == {entries[holder].st_ino}  # one file, three names
        lease = tmp_path / "leases" / f"{'a' * 32}.00000000.json"
        first = json.loads(lease.read_text())
        assert first["owner"] == leases.owner and first["pid"] == os.getpid()
        time.sleep(0.6)
        assert json.loads(lease.read_text())["beat"] > first["beat"]  # renewed through the holder
        leases.release("a" * 32)
        assert set(_entries(tmp_path)) == {holder, f"{'b' * 32}.00000000.json"}
    assert _entries(tmp_path) == {}  # released, holder gone


def test_a_lease_held_by_one_run_is_refused_to_another_until_released(tmp_path):
    store = LocalStore(tmp_path)
    with Leases(store) as first, Leases(LocalStore(tmp_path)) as second:
        assert first.acquire("k" * 32)
        assert not second.acquire("k" * 32)
        first.release("k" * 32)
        assert second.acquire("k" * 32)
        assert not first.acquire("k" * 32)


def test_the_lease_of_a_stopped_run_is_taken_over_and_its_holder_removed(tmp_path):
    store = LocalStore(tmp_path)
    stale = Leases(store, ttl=0.3)
    assert stale.acquire("k" * 32)  # never released, never renewed: a run that was killed
    time.sleep(0.5)
    with Leases(LocalStore(tmp_path), ttl=0.3) as taker:
        assert not taker.acquire("k" * 32)  # first sight of its heartbeat: judged by what we see happen next
        time.sleep(0.4)  # no progress for the TTL, timed by our own clock
        assert taker.acquire("k" * 32)
        assert f"holder-{stale.owner}.json" not in _entries(tmp_path)
        taker.release("k" * 32)
    assert _entries(tmp_path) == {}


class _NoLinks(LocalStore):
    """A folder on a file system without hard links (some FUSE and SMB mounts)."""

    def share(self, rel: str, text: str) -> bool:
        return False


def test_without_hard_links_each_lease_is_a_file_renewed_on_its_own(tmp_path):
    with Leases(_NoLinks(tmp_path), ttl=0.8) as leases:
        assert leases.acquire("a" * 32)
        entries = _entries(tmp_path)
        assert list(entries) == [f"{'a' * 32}.00000000.json"] and entries[f"{'a' * 32}.00000000.json"].st_nlink == 1
        lease = tmp_path / "leases" / f"{'a' * 32}.00000000.json"
        beat = json.loads(lease.read_text())["beat"]
        time.sleep(0.6)
        assert json.loads(lease.read_text())["beat"] > beat
        with Leases(_NoLinks(tmp_path)) as other:
            assert not other.acquire("a" * 32)
    assert _entries(tmp_path) == {}



def _foreign(tmp_path, key, beat):
    """A lease file written by a run on another machine, with that machine's clock's idea of now."""
    path = tmp_path / "leases" / f"{key}.00000000.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"owner": "f" * 32, "host": "elsewhere", "pid": 1, "beat": beat}))
    return path


def test_a_live_holder_whose_clock_is_hours_off_keeps_its_lease(tmp_path):
    """Its heartbeat moves: it is alive, whatever its timestamps say (hours behind here)."""
    lease = _foreign(tmp_path, "a" * 32, time.time() - 5 * 3600)
    with Leases(LocalStore(tmp_path), ttl=0.3) as observer:
        for step in range(6):
            lease.write_text(json.dumps({"owner": "f" * 32, "host": "elsewhere", "pid": 1,
                                         "beat": time.time() - 5 * 3600 + step}))
            assert not observer.acquire("a" * 32)
            time.sleep(0.1)


def test_a_stopped_holder_whose_clock_is_hours_ahead_is_taken_over(tmp_path):
    """Its heartbeat stands still: taken over after the TTL of our own clock, though it claims the future."""
    _foreign(tmp_path, "b" * 32, time.time() + 5 * 3600)
    with Leases(LocalStore(tmp_path), ttl=0.3) as observer:
        assert not observer.acquire("b" * 32)
        time.sleep(0.4)
        assert observer.acquire("b" * 32)
        observer.release("b" * 32)


def test_a_run_whose_leases_were_taken_over_while_it_was_stopped_goes_on(tmp_path):
    """The loser finds its holder file gone (the taker removes it): it keeps working, never an error."""
    with Leases(LocalStore(tmp_path), ttl=0.3) as loser:
        assert loser.acquire("c" * 32)
        (tmp_path / "leases" / f"holder-{loser.owner}.json").unlink()  # what a takeover does to it
        assert loser.acquire("d" * 32)  # a new lease: taken, without the holder
        loser.release("c" * 32)
        loser.release("d" * 32)
    assert _entries(tmp_path) == {}


def test_a_run_stopped_past_the_ttl_loses_its_lease_and_still_finishes(make_project):
    """SIGSTOP a run holding a lease, let another take it over, SIGCONT: both succeed, no traceback."""
    import os
    import signal
    import subprocess

    from conftest import EXPERIMENT

    proj = make_project({
        "stages/__init__.py": "",
        "stages/s.py": '''
            import os, time
            from pathlib import Path
            from orchestrator import stage


            @stage(outputs=["slow"])
            def slow():
                with open(os.environ["RUNS_LOG"], "a") as log:
                    log.write(f"slow {os.getpid()}\\n")
                go = Path(os.environ["RUNS_LOG"] + ".go")
                deadline = time.time() + 60
                while not go.exists() and time.time() < deadline:
                    time.sleep(0.05)
                return 1
        ''',
        "params/p.yaml": "params: {}\n",
    })
    env = {**proj.env(), "ORCHESTRATOR_LEASE_TTL": "1"}
    first = subprocess.Popen([*EXPERIMENT, "run", "p"], cwd=proj.root, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    proj.wait_logged("slow")
    os.kill(first.pid, signal.SIGSTOP)  # a suspended laptop
    try:
        (proj.root / "runs.log.go").write_text("")
        second = subprocess.run([*EXPERIMENT, "run", "p"], cwd=proj.root, env=env, capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 0, second.stderr  # it took the stopped run's lease over and computed it
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert "Traceback" not in err
