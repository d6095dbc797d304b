"""Run-wide options: what ``experiment run`` flags (or ``Session.run(options=...)``) ask of every task.

Frozen values, shipped inside each :class:`~orchestrator.engine.task.Task`. ``None`` means "not
set on the command line": the stage's own declaration, then the default, applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any

from ..errors import UsageError

__all__ = ["MapEngine", "MapOptions", "RunOptions"]


class MapEngine(str, Enum):
    """Where a map stage's chunks run."""

    POOL = "pool"  # a process pool of the stage's own process
    DASK = "dask"  # the Dask cluster the Dask executor runs the stage on


@dataclass(frozen=True)
class MapOptions:
    """How map stages fan out in this run.

    Attributes:
        workers: Pool processes per map stage (0: in the stage's process); None: the stage's
            ``resources={"cpus": N}``, else the usable cores.
        shard: ``(i, n)``: compute only this process's share of the items (``--shard i/n``).
        max_item_failures: Items that may fail before the stage fails (None: the stage's own).
        devices: One worker per device, each seeing only its own (``--devices cuda:0,cuda:1``).
        engine: :class:`MapEngine` value; set by the executor, not by users.
    """

    workers: int | None = None
    shard: tuple[int, int] | None = None
    max_item_failures: int | None = None
    devices: tuple[str, ...] = ()
    engine: MapEngine = MapEngine.POOL


@dataclass(frozen=True)
class RunOptions:
    """Options of one run, the same for every task.

    Attributes:
        map: How map stages fan out.
        strict_data: An undeclared read (a file a stage opened that is not part of its key)
            fails the stage instead of warning (``--strict-data``).
    """

    map: MapOptions = field(default_factory=MapOptions)
    strict_data: bool = False

    @classmethod
    def of(cls, value: RunOptions | Mapping[str, Any] | None) -> RunOptions:
        """``value`` as options: given ones as they are, a flat mapping (the Python API's ``options=``) checked."""
        if value is None:
            return cls()
        if isinstance(value, RunOptions):
            return value
        known = {f.name for f in fields(MapOptions) if f.name != "engine"} | {"strict_data"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise UsageError(f"unknown run option(s) {', '.join(map(repr, unknown))}. "
                             f"Fix: use one of {', '.join(sorted(known))}.")
        mapped: dict[str, Any] = {k: v for k, v in value.items() if k != "strict_data" and v is not None}
        if "devices" in mapped:
            mapped["devices"] = tuple(str(d) for d in mapped["devices"])
        if "shard" in mapped:
            mapped["shard"] = tuple(int(i) for i in mapped["shard"])
        return cls(MapOptions(**mapped), bool(value.get("strict_data", False)))

    def on_engine(self, engine: MapEngine) -> RunOptions:
        """These options with map chunks running on ``engine``."""
        return replace(self, map=replace(self.map, engine=engine))
