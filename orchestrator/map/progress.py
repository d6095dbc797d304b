"""Where a map stage stands: items cached, computed and failed, and the rate."""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["MapProgress"]


@dataclass(frozen=True)
class MapProgress:
    """Where a map stage stands."""

    total: int
    cached: int
    computed: int
    failed: int
    started: float

    @property
    def done(self) -> int:
        """Items with a result or a failure."""
        return self.cached + self.computed + self.failed

    @property
    def rate(self) -> float:
        """Computed items per second."""
        elapsed = time.monotonic() - self.started
        return self.computed / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate."""
        left = self.total - self.done
        return left / self.rate if self.rate > 0 else None
