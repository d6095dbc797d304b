"""The driver's side of one-node admission: what each running node holds, which nodes wait for resources.

The :class:`~orchestrator.engine.admission.Ledger` counts the node's free GPUs, cores and memory;
:class:`Reservations` remembers, per node of the run, the :class:`~orchestrator.engine.admission.Grant`
it holds, the nodes parked until a running one gives its resources back (with the decision made
for them, so they are not decided twice), and which of them fit again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ..errors import ResourceError
from ..project.declaration import Stage
from .admission import Grant, Ledger
from .dag import Node
from .planner import Decision

__all__ = ["Reservations"]


class Reservations:
    """Grants of running nodes and the nodes waiting for resources."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.grants: dict[str, Grant] = {}  # running node -> what it holds
        self.parked: dict[str, Decision] = {}  # decided to run, waiting for resources a running node holds
        self.unparked: dict[str, Decision] = {}  # parked ones back in the ready queue, with their decision

    def decision(self, nid: str) -> Decision | None:
        """The decision made for ``nid`` before it was parked (None: decide it now)."""
        return self.unparked.pop(nid, None)

    def take(self, node: Node, decision: Decision, *, alone: bool) -> Grant | None:
        """Reserve what ``node`` asks for, or park it (None) until a running node gives resources back.

        Raises:
            ResourceError: nothing runs (``alone``) and it still does not fit: it never will.
        """
        grant = self.ledger.take(self.ledger.request(node.stage))
        if grant is None:
            if alone:  # (checked before the run: should not happen)
                raise ResourceError(f"stage {node.stage.name!r} [{node.param_set}] asks for more than this node "
                                    "has free. Fix: lower its resources= or free GPUs.")
            self.parked[node.id] = decision
        return grant

    def hold(self, nid: str, grant: Grant) -> None:
        """``nid`` runs with ``grant``."""
        self.grants[nid] = grant

    def give(self, grant: Grant | None) -> None:
        """A grant taken for a node that will not run after all."""
        if grant is not None:
            self.ledger.give(grant)

    def give_early(self, nid: str) -> None:
        """``nid`` ended well: its resources are free before the driver's bookkeeping of it."""
        grant = self.grants.get(nid)
        if grant is not None and not grant.returned:
            self.grants[nid] = replace(grant, returned=True)
            self.ledger.give(grant)

    def release(self, nid: str) -> Grant | None:
        """``nid`` ended: what it held (given back now, unless it was already)."""
        grant = self.grants.pop(nid, None)
        if grant is not None and not grant.returned:
            self.ledger.give(grant)
        return grant

    def fitting(self, stage_of: Callable[[str], Stage], *, anything_running: bool) -> list[str]:
        """Parked nodes that fit now (all of them when nothing runs), in the order they parked."""
        fitting = [nid for nid in self.parked if not anything_running or self.ledger.fits(stage_of(nid))]
        for nid in fitting:
            self.unparked[nid] = self.parked.pop(nid)
        return fitting

    def visible(self, nid: str) -> str | None:
        """``CUDA_VISIBLE_DEVICES`` for ``nid`` on a node with GPUs (its own, or none); None without GPUs."""
        if not self.ledger.has_gpus:
            return None
        grant = self.grants.get(nid)
        return grant.visible if grant is not None else ""

    def holding(self) -> dict[str, str]:
        """Running node -> the GPUs it holds."""
        return {nid: grant.visible for nid, grant in self.grants.items() if grant.gpus}
