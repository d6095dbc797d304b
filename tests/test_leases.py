"""Leases on a local store: hard links to one holder file per run, renewed by one write."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from orchestrator.leases import Leases
from orchestrator.localstore import LocalStore


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
