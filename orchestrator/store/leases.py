"""Per-key leases with heartbeats: a stage needed by several runs is computed once.

Before running a stage, the driver takes the lease of its key. Another run that needs the
same key waits, then finds the stored result and reuses it. Leases live in the store, so
this works across processes and machines sharing it, on a local folder or on S3::

    leases/<key>.<generation>.json    {"owner", "host", "pid", "beat"}

One flat folder: taking and releasing a lease creates and deletes one file, with no folder
per key to make and remove (on a local disk each of those costs as much as the file). On a
local folder a lease is not even a file of its own: each run writes one holder file,
``leases/holder-<owner>.json``, and each lease it takes is a hard link to it, made only if
the name is free (``link`` fails on an existing name, like an exclusive create). Creating a
file is the dearest step of storing a result, and a link costs a tenth of it; the heartbeat
rewrites the holder in place, which renews every lease of the run at once.

The holder is the highest generation. Taking a lease is an exclusive create of the next
generation, which exactly one contender wins; this needs no rename (S3 has none). A lease
whose heartbeat has not changed for the TTL, as timed by the observer's own monotonic clock
(no two machines' clocks are ever compared), or, on the same host, whose process is gone
(or a zombie: dead, not reaped yet), is taken over by creating the next generation: no
``--unlock`` ritual after a crash. A run that finds its leases taken over (it was stopped
past the TTL) goes on: duplicate work at worst, never a failure.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from ..processes import alive, hostname
from ..settings import env_number
from .base import Store

logger = logging.getLogger(__name__)

__all__ = ["Leases", "leased_keys"]

TTL_ENV = "ORCHESTRATOR_LEASE_TTL"
DEFAULT_TTL = 60.0


class Leases:
    """The leases one run holds, kept alive by a heartbeat thread."""

    def __init__(self, store: Store, ttl: float | None = None) -> None:
        self.store = store
        self.ttl = float(ttl) if ttl is not None else env_number(TTL_ENV, DEFAULT_TTL, what="a number of seconds",
                                                                  minimum=0.1)
        self.owner = os.urandom(16).hex()
        self.host = hostname()
        self.held: dict[str, int] = {}
        self._holder: str | None = None  # the file this run's leases are links to (local stores)
        self._checked = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # (key, generation) of another run's lease -> (heartbeat value, our monotonic time when first seen)
        self._progress: dict[tuple[str, int], tuple[Any, float]] = {}
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Leases:
        self._thread = threading.Thread(target=self._beat, name="orchestrator-leases", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for key in list(self.held):
            self.release(key)
        if self._holder is not None:
            self.store.delete(self._holder)

    def acquire(self, key: str) -> bool:
        """Take the lease of ``key``; False while a live run (this one included) holds it.

        Not reentrant on purpose: two nodes of one run with the same key (two param sets
        that agree on a stage's params) compute it once; the second waits and reuses it.
        """
        with self._lock:
            if key in self.held:
                return False
        generations = self._generations(key)
        following = 0
        if generations:
            top = generations[-1]
            holder = self._read(key, top)
            if holder is None or self._alive(holder, (key, top)):
                return False
            logger.info("taking over the lease of %s from a run that stopped (%s, pid %s)",
                        key[:12], holder.get("host"), holder.get("pid"))
            following = top + 1
        if not self._take(self._path(key, following)):
            return False
        if following and holder is not None and self._holder is not None and str(holder.get("owner", "")).isalnum():
            self.store.delete(self._holder_path(str(holder["owner"])))  # the stopped run's; its links stay valid
        with self._lock:
            self.held[key] = following
        return True

    def _take(self, path: str) -> bool:
        if not self._checked:
            self._checked = True
            holder = self._holder_path(self.owner)
            if self.store.share(holder, self._payload()):
                self._holder = holder
        if self._holder is not None:
            try:
                return self.store.link_exclusive(path, self._holder)
            except FileNotFoundError:  # our holder was removed: another run took our leases over while
                self._lost()            # this one was stopped (SIGSTOP, a suspended machine); go on without
        return self.store.create_exclusive(path, self._payload())

    def _lost(self) -> None:
        """Our leases were taken over: from now on each lease is a file of its own (duplicate work at worst)."""
        if self._holder is not None:
            logger.warning("another run took over this run's leases while it was stopped; it goes on (a stage "
                           "both runs need may be computed twice)")
            self._holder = None

    @staticmethod
    def _holder_path(owner: str) -> str:
        return f"leases/holder-{owner}.json"

    def release(self, key: str) -> None:
        """Give the lease back (after the stage's result is stored or it failed)."""
        with self._lock:
            generation = self.held.pop(key, None)
        if generation is None:
            return
        if generation == 0:  # not taken over from a stopped run: there is no older generation to clear
            self.store.delete(self._path(key, 0))
            return
        for older in self._generations(key):
            if older <= generation:
                self.store.delete(self._path(key, older))

    def _generations(self, key: str) -> list[int]:
        found = []
        for name in self.store.list_names("leases"):
            held, _, generation = name.removesuffix(".json").rpartition(".")
            if held == key and generation.isdigit():
                found.append(int(generation))
        return sorted(found)

    def _path(self, key: str, generation: int) -> str:
        return f"leases/{key}.{generation:08d}.json"

    def _payload(self) -> str:
        return json.dumps({"owner": self.owner, "host": self.host, "pid": os.getpid(), "beat": time.time()})

    def _read(self, key: str, generation: int) -> dict[str, Any] | None:
        try:
            text = self.store.read_text(self._path(key, generation))
        except Exception:  # released (or taken over) while we looked: look again next time
            return None
        if not text:
            return {"beat": time.time()}  # being written right now: alive
        try:
            return json.loads(text)  # type: ignore[no-any-return]
        except ValueError:
            return {"beat": time.time()}

    def _alive(self, holder: dict[str, Any], seen_as: tuple[str, int] | None = None) -> bool:
        """Whether the holder still works: never judged by comparing its clock with ours.

        On this host a process that is gone (or a zombie) is dead at once. Otherwise the holder
        is alive while its heartbeat *changes*: the first time we read a heartbeat value we
        note it against our own monotonic clock, and the holder is dead once the same value has
        been there for the TTL. A machine whose clock is hours ahead or behind, or a clock that
        jumps, changes nothing; a stopped holder (SIGSTOP, a suspended laptop) is taken over.
        """
        if holder.get("owner") == self.owner:
            return True
        if holder.get("host") == self.host and isinstance(holder.get("pid"), int) and not alive(holder["pid"]):
            return False  # a zombie is dead too: its parent has just not reaped it yet
        if seen_as is None:
            return True
        beat = holder.get("beat")
        now = time.monotonic()
        first = self._progress.get(seen_as)
        if first is None or first[0] != beat:
            self._progress[seen_as] = (beat, now)
            return True
        return now - first[1] <= self.ttl

    def _beat(self) -> None:
        interval = max(0.2, self.ttl / 4)
        while not self._stop.wait(interval):
            with self._lock:
                held = dict(self.held)
            if self._holder is not None:  # one write renews every lease: they are links to it
                if held and not self._renew(self.store.rewrite, self._holder, "the leases of this run"):
                    if not self.store.read_text(self._holder):  # (removed by a run that took them over)
                        self._lost()
                continue
            for key, generation in held.items():
                self._renew(self.store.write_text, self._path(key, generation), f"the lease of {key[:12]}")

    def _renew(self, write: Callable[[str, str], None], path: str, what: str) -> bool:
        try:
            write(path, self._payload())
        except FileNotFoundError:
            return False
        except Exception as exc:  # a failed heartbeat must not kill the run
            logger.warning("could not renew %s: %s", what, exc)
            return False
        return True


def leased_keys(store: Store) -> set[str]:
    """The keys that have a lease in ``store`` now (live or not yet taken over)."""
    return {name.removesuffix(".json").rpartition(".")[0] for name in store.list_names("leases")} - {""}
