"""Quantities for people: byte sizes and local times, written the same way on the console and in reports."""

from __future__ import annotations

import time

__all__ = ["byte_size", "local_time"]


def byte_size(n: float) -> str:
    """``512 B``, ``1.5 KiB`` ... ``3.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def local_time(stamp: float | None) -> str:
    """Local date and time of a timestamp (``-`` for none)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"
