"""Nodes that join a run while it goes: what a search hands the driver (its trials, wave by wave)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .dag import Dag

__all__ = ["NodeFeed"]


class NodeFeed(Protocol):
    """Asked by the driver for more work; told (as a run observer) what finished.

    ``more()`` is called whenever the driver could start something: it returns the DAGs of new
    param sets to add now (each wired within itself: no node of one reads another's), or nothing.
    The run ends when nothing runs, nothing is ready and ``more()`` has nothing.
    """

    def more(self) -> Sequence[Dag]:
        """New nodes to run now."""
        ...
