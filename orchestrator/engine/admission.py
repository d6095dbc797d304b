"""Admission on one node: which ready stage may start now, on which GPUs (pure bookkeeping).

A stage asks for ``resources={"gpus": 1, "cpus": 4, "mem": "16G"}``; a stage that calls
``ctx.torchrun(...)`` and declares no GPUs asks for its literal ``gpus=`` or
``nproc_per_node=`` (one GPU per rank) when the node has GPUs. The :class:`Ledger` holds
the node's :class:`~orchestrator.machine.Inventory` and hands out :class:`Grant` values:
specific GPU indices, exclusively (a fraction of one GPU for ``gpus=0.5``), cores and memory.
A stage that does not fit waits for a running one to give its grant back; one that could never
fit (more than the node has) is refused before anything runs (:meth:`Ledger.check`).

Cores are soft: a stage asking for more cores than the node has is given them all and runs
alone. A stage that asks for no GPU on a node that has some sees none (``CUDA_VISIBLE_DEVICES=""``),
so it cannot take a GPU another stage holds.
"""

from __future__ import annotations

import ast
import functools
import inspect
import logging
import math
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ResourceError
from ..executors.resources import cpus as declared_cpus
from ..executors.resources import memory_bytes
from ..keys.codeast import launched_gpus
from ..machine import Inventory
from ..project.declaration import Stage
from ..units import byte_size

logger = logging.getLogger(__name__)

__all__ = ["Grant", "Ledger", "Request"]

_EPSILON = 1e-9


@dataclass(frozen=True)
class Request:
    """What one execution of a stage takes while it runs."""

    gpus: float = 0.0
    cpus: float = 0.0
    mem: int = 0


@dataclass(frozen=True)
class Grant:
    """What a running execution holds: GPU indices (``share`` of each), cores, memory."""

    gpus: tuple[int, ...] = ()
    share: float = 0.0
    cpus: float = 0.0
    mem: int = 0
    returned: bool = False  # given back already (the execution ended; its bookkeeping had not)

    @property
    def visible(self) -> str:
        """The ``CUDA_VISIBLE_DEVICES`` value of the execution: its GPUs, or none."""
        return ",".join(map(str, self.gpus))


@functools.lru_cache(maxsize=512)
def _implied_gpus(stage: Stage) -> int | None:
    """GPUs the stage's own ``ctx.torchrun`` calls ask for (None: it launches nothing)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(stage.fn)))
    except (OSError, TypeError, SyntaxError):
        return None
    return launched_gpus(ast.walk(tree))


class Ledger:
    """The node's free resources; :meth:`take` and :meth:`give` as executions start and end.

    ``cores`` overrides the inventory's cores (``-j 8`` on 4 cores lets 8 one-core stages run).
    """

    def __init__(self, inventory: Inventory, *, cores: int | None = None) -> None:
        self.inventory = inventory
        self.free = {g.index: 0.0 if g.busy else 1.0 for g in inventory.gpus}  # share of each GPU still free
        self.usable = sum(1 for g in inventory.gpus if not g.busy)
        self.cores = float(max(inventory.cpus, cores or 0))
        self.cpus = self.cores
        self.mem = inventory.memory
        self._requests: dict[str, Request] = {}
        self._warned: set[str] = set()

    @property
    def has_gpus(self) -> bool:
        """The node has GPUs: every execution gets a ``CUDA_VISIBLE_DEVICES`` (possibly empty)."""
        return bool(self.free)

    def request(self, stage: Stage) -> Request:
        """What ``stage`` asks for on this node (checked: see :meth:`check`)."""
        known = self._requests.get(stage.name)
        if known is None:
            known = self._requests[stage.name] = self._request(stage)
        return known

    def _request(self, stage: Stage) -> Request:
        hints = stage.resources
        gpus = 0.0
        if "gpus" in hints:
            try:
                gpus = float(hints["gpus"])
            except (TypeError, ValueError):
                raise ResourceError(f"stage {stage.name!r} asks for gpus={hints['gpus']!r}. Fix: a number such as "
                                    "resources={'gpus': 1} (or 0.5 to share one GPU).") from None
            if gpus < 0 or (gpus > 1 and not gpus.is_integer()) or math.isnan(gpus):
                raise ResourceError(f"stage {stage.name!r} asks for gpus={hints['gpus']!r}: a fraction shares one "
                                    "GPU, more than one must be whole. Fix: resources={'gpus': 2} or {'gpus': 0.5}.")
            if gpus and not self.free and stage.name not in self._warned:
                self._warned.add(stage.name)
                logger.warning("%s asks for %g GPU(s) but this machine shows none (no nvidia-smi, or --gpus none): "
                               "it runs without one", stage.name, gpus)
            if not self.free:
                gpus = 0.0
        elif self.free:
            implied = _implied_gpus(stage)  # a torchrun stage: one GPU per rank, at most what the node has
            gpus = float(min(implied, max(1, self.usable))) if implied else 0.0
        try:
            mem = memory_bytes(hints) or 0
        except ValueError as exc:
            raise ResourceError(f"stage {stage.name!r}: {exc}.") from None
        wanted = declared_cpus(hints, 1.0 if not gpus else 0.0)
        return Request(gpus, min(max(0.0, wanted), self.cores), mem)

    def check(self, stages: Iterable[Stage]) -> None:
        """Refuse, before anything runs, a stage that asks for more than this node could ever give it.

        Raises:
            ResourceError: the stage, what it asks, what the node has, and the fix.
        """
        for stage in stages:
            request = self.request(stage)
            if request.gpus > self.usable + _EPSILON:
                busy = [g.index for g in self.inventory.gpus if g.busy]
                has = f"{self.usable} free GPU{'s' if self.usable != 1 else ''}" + (
                    f" ({len(busy)} more in use by other processes: {','.join(map(str, busy))})" if busy else "")
                raise ResourceError(
                    f"stage {stage.name!r} asks for {request.gpus:g} GPUs; this node has {has}. Fix: lower its "
                    f"resources={{'gpus': ...}}, free or add GPUs (--gpus 0,1,...), or run it on a cluster "
                    "(--executor ray/slurm).")
            if self.mem and request.mem > self.mem:
                raise ResourceError(
                    f"stage {stage.name!r} asks for {byte_size(request.mem)} of memory; this node has "
                    f"{byte_size(self.mem)}. Fix: lower its resources={{'mem': ...}} or run it on a bigger machine.")

    def fits(self, stage: Stage) -> bool:
        """Whether ``stage`` could start now."""
        grant = self.take(self.request(stage))
        if grant is not None:
            self.give(grant)
        return grant is not None

    def take(self, request: Request) -> Grant | None:
        """Reserve ``request`` now, or None when it must wait for a running execution to end."""
        if request.cpus > self.cpus + _EPSILON or (self.mem and request.mem > self.mem):
            return None
        gpus: tuple[int, ...] = ()
        share = 0.0
        if request.gpus >= 1:
            whole = [i for i, free in self.free.items() if free >= 1 - _EPSILON]
            if len(whole) < request.gpus:
                return None
            gpus, share = tuple(sorted(whole[: int(request.gpus)])), 1.0
        elif request.gpus > 0:  # a share of one GPU: the fullest that still fits, keeping whole GPUs whole
            fitting = [(free, i) for i, free in self.free.items() if free >= request.gpus - _EPSILON]
            if not fitting:
                return None
            gpus, share = (min(fitting)[1],), request.gpus
        for index in gpus:
            self.free[index] -= share
        self.cpus -= request.cpus
        if self.mem:
            self.mem -= request.mem
        return Grant(gpus, share, request.cpus, request.mem)

    def give(self, grant: Grant) -> None:
        """An execution ended: its resources are free again."""
        for index in grant.gpus:
            self.free[index] = min(1.0, self.free[index] + grant.share)
        self.cpus += grant.cpus
        if self.mem:
            self.mem += grant.mem
