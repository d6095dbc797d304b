"""``experiment compare``: the param sets of an experiment side by side, with what is stale marked."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from typing import Any

import click

from .options import CONTEXT, handle_errors, session_arguments
from .startup import resume_gc
from .streams import stdout_to_stderr

__all__ = ["compare", "print_table", "register"]

STATES = ("fresh", "stale", "missing")


@click.command(context_settings=CONTEXT)
@session_arguments
@click.option("--where", metavar="EXPR", default=None,
              help="Only rows where EXPR holds, over params and metrics: 'lr < 0.1 and accuracy > 0.9'.")
@click.option("--sort", metavar="COLUMN", default=None, help="Best first by this metric (or param, ascending).")
@click.option("--state", "states", multiple=True, type=click.Choice(STATES),
              help="Only rows in this state (repeatable).")
@click.option("--fill", is_flag=True, help="Run the stale and missing rows (fresh ones stay cached), then compare.")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the table as CSV.")
@handle_errors
def compare(names: tuple[str, ...], overrides: tuple[str, ...], targets: tuple[str, ...], cache_dir: str | None,
            where: str | None, sort: str | None, states: tuple[str, ...], fill: bool, as_json: bool,
            as_csv: bool) -> None:
    """Compare the param sets of PARAMS_SET...: the params that vary, the latest metrics, and whether each
    row is still fresh for today's code and param files (stale rows name the stage that would run and why).

    \b
    experiment compare sweep --sort accuracy
    experiment compare sweep --where 'lr < 0.1' --csv > sweep.csv
    experiment compare sweep --fill          runs exactly the stale and missing rows
    """
    from ..api import open_session
    from ..records.compare import select

    resume_gc()  # before the user's modules are imported
    with stdout_to_stderr(as_json or as_csv):
        session = open_session(names, overrides=overrides, targets=targets or None, cache_dir=cache_dir)
        if fill:
            result = session.run(desc="compare --fill")
            if not result.ok:
                click.secho(f"error: run {result.run_id} {result.status}: see `experiment show {result.run_id}`.",
                            fg="red", err=True)
                sys.exit(130 if result.status == "interrupted" else 1)
    table = select(session.compare(), where=where, sort=sort, states=states or None)
    if as_json:
        click.echo(json.dumps(table.to_dict(), indent=1, default=str))
    elif as_csv:
        click.echo(_csv(table), nl=False)
    else:
        print_table(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return "-" if value is None else str(value)


def _csv(table: Any) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["set", "state", "why", *table.params, *table.metrics])
    for row in table.rows:
        writer.writerow([row.param_set, row.state, row.why, *(row.params.get(p, "") for p in table.params),
                         *(row.metrics.get(m, "") for m in table.metrics)])
    return out.getvalue()


def print_table(table: Any) -> None:
    """The comparison as a table: rich on a terminal, plain aligned lines elsewhere."""
    from .plain import Grid, grid_text, terminal

    best = table.best()
    header = ("set", *table.params, *table.metrics, "state")
    rows = []
    for row in table.rows:
        state = row.state if row.state != "stale" else f"stale ({row.why})"
        colour = {"fresh": "green", "stale": "yellow", "missing": "red"}[row.state]
        metrics = [(_cell(row.metrics.get(m)) + (" *" if best.get(m) == row.param_set else ""),
                    "bold" if best.get(m) == row.param_set else "") for m in table.metrics]
        rows.append(((row.param_set, ""), *((_cell(row.params.get(p)), "") for p in table.params), *metrics,
                     (state, colour)))
    grid = Grid(header, tuple(rows), (False, *(False for _ in table.params), *(True for _ in table.metrics), False))
    if not table.rows:
        click.echo("no param sets match.", err=True)
        return
    if terminal(sys.stdout):
        from .render import out, rich_table

        out.print(rich_table(grid))
    else:  # a pipe or a file: plain aligned lines, never wrapped
        click.echo(grid_text(grid))
    if best:
        click.echo("* best of its column" + ("" if all(r.state == "fresh" for r in table.rows) else
                   "; metrics of stale rows are from their last result, before what changed"), err=True)


def register(group: click.Group) -> None:
    """Add ``compare`` to the ``experiment`` group."""
    group.add_command(compare)
