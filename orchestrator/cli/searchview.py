"""How a search run ends on the console: its best trials, and where the study went."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

__all__ = ["print_search", "read_summary"]

SHOWN = 5  # best trials listed after a search run


def read_summary(report: Path) -> dict[str, Any] | None:
    """The search summary beside a run's report, or None (not a search, or it did not get that far)."""
    try:
        return dict(json.loads((report.parent / "search.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def _value(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def print_search(summary: dict[str, Any]) -> None:
    """The best trials (by the objective), counts by state, importances, and how to look further."""
    trials = summary["trials"]
    states: dict[str, int] = {}
    for t in trials:
        states[t["state"]] = states.get(t["state"], 0) + 1
    direction = summary["direction"]
    click.echo(f"search {summary['name']}: {len(trials)} of {summary['planned']} trials "
               f"({', '.join(f'{n} {s}' for s, n in sorted(states.items()))}); {direction} {summary['metric']}")
    done = sorted((t for t in trials if t["state"] == "complete" and t["value"] is not None),
                  key=lambda t: t["value"], reverse=direction == "maximize")
    for rank, t in enumerate(done[:SHOWN]):
        params = ", ".join(f"{k}={_value(v)}" for k, v in t["params"].items())
        click.echo(f"  {'best' if rank == 0 else '    '} #{t['number']:<4} {summary['metric']} = {_value(t['value']):<10}  "
                   f"{params}")
    if summary.get("importances"):
        click.echo("  importance: " + ", ".join(f"{k} {v:.2f}" for k, v in summary["importances"].items()))
    if summary.get("best"):
        click.echo(f"  best set: {summary['best']['set']}  (its lineage: experiment lineage ARTIFACT "
                   f"--set '{summary['best']['set']}')")
