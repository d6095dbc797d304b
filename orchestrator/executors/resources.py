"""Resource hints (``@stage(resources={"gpus": 1, "cpus": 4, "mem": "16G"})``) in engine units."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..machine import usable_cpus

__all__ = ["cpus", "gpus", "memory_bytes", "usable_cpus"]

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def cpus(resources: Mapping[str, Any], default: float = 1) -> float:
    """CPU cores a stage asks for."""
    return float(resources.get("cpus", default))


def gpus(resources: Mapping[str, Any]) -> float:
    """GPUs a stage asks for."""
    return float(resources.get("gpus", 0))


def memory_bytes(resources: Mapping[str, Any]) -> int | None:
    """Memory a stage asks for (``"16G"``, ``"512M"`` or a number of bytes), or None."""
    value = resources.get("mem")
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)i?B?\s*", str(value), re.IGNORECASE)
    if not match:
        raise ValueError(f"cannot read memory {value!r}: write it like '16G' or '512M'")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])
