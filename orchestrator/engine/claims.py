"""Which run computes a key: the leases a run takes for the nodes it is about to compute.

A node's key is leased while it runs, so two runs needing the same result compute it once; a
map stage's item key (shared by every set whose items are the same) is leased with it, so its
segments are written by one run at a time, and gc keeps them while it runs.
"""

from __future__ import annotations

from typing import Any

from ..keys.cachekey import map_key
from ..store.leases import Leases
from .dag import Node
from .planner import Decision

__all__ = ["Claims", "map_key_of"]


def map_key_of(node: Node, decision: Decision) -> str:
    """The key a map node's items are stored under ("" for other nodes)."""
    return map_key(decision.parts, node.stage.map_over) if node.stage.map_over and decision.parts else ""


class Claims:
    """The leases of one run (a context manager: they are released, and their heartbeats stopped, at exit)."""

    def __init__(self, leases: Leases) -> None:
        self.leases = leases

    def __enter__(self) -> Claims:
        self.leases.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.leases.__exit__(*exc)

    def take(self, node: Node, decision: Decision) -> bool:
        """Lease the node's key and its map key; False (holding neither) when another run holds one."""
        assert decision.key is not None
        if not self.leases.acquire(decision.key):
            return False
        shared = map_key_of(node, decision)
        if shared and not self.leases.acquire(shared):
            self.leases.release(decision.key)
            return False
        return True

    def release(self, node: Node, decision: Decision) -> None:
        shared = map_key_of(node, decision)
        if shared:
            self.leases.release(shared)
        if decision.key is not None:
            self.leases.release(decision.key)
