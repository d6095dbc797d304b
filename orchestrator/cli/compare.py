"""``experiment compare``: the param sets of an experiment side by side, with what is stale marked."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from typing import Any

import click

from .options import CONTEXT, handle_errors
from .startup import resume_gc
from .streams import stdout_to_stderr

__all__ = ["compare", "print_table", "register"]

STATES = ("fresh", "stale", "missing", "recorded")


@click.command(context_settings=CONTEXT)
@click.argument("names", nargs=-1, metavar="[PARAMS_SET...]")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a param in every set (YAML-typed, dotted keys; repeatable).")
@click.option("--target", "targets", multiple=True, metavar="ARTIFACT",
              help="Compare only what this artifact needs (repeatable).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Artifact store (default: cache/ in the project, or $ORCHESTRATOR_CACHE_DIR).")
@click.option("--runs", "run_refs", multiple=True, metavar="RUN",
              help="Instead of param files: these recorded runs, a row per run and set, as they left them.")
@click.option("--tag", default=None, metavar="TAG", help="Instead of param files: every recorded run with this tag.")
@click.option("--where", metavar="EXPR", default=None,
              help="Only rows where EXPR holds, over params and metrics: 'lr < 0.1 and accuracy > 0.9'.")
@click.option("--sort", metavar="COLUMN", default=None, help="Best first by this metric (or param, ascending).")
@click.option("--state", "states", multiple=True, type=click.Choice(STATES),
              help="Only rows in this state (repeatable).")
@click.option("--only-changed", is_flag=True, help="Only rows that are not fresh (stale or missing).")
@click.option("--fill", is_flag=True, help="Run the stale and missing rows (fresh ones stay cached), then compare.")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the table as CSV.")
@handle_errors
def compare(names: tuple[str, ...], overrides: tuple[str, ...], targets: tuple[str, ...], cache_dir: str | None,
            run_refs: tuple[str, ...], tag: str | None, where: str | None, sort: str | None, states: tuple[str, ...],
            only_changed: bool, fill: bool, as_json: bool, as_csv: bool) -> None:
    """Compare the param sets of PARAMS_SET...: the params that vary, the latest metrics, and whether each
    row is still fresh for today's code and param files (stale rows name the stage that would run and why).

    \b
    experiment compare sweep --sort accuracy
    experiment compare sweep --where 'lr < 0.1' --csv > sweep.csv
    experiment compare sweep --fill          runs exactly the stale and missing rows
    experiment compare --tag paper           every run tagged paper, a row per run and set
    """
    from ..errors import UsageError
    from ..records.compare import select

    if (run_refs or tag) and (names or fill):
        raise UsageError("compare takes param files, or --runs/--tag, not both. Fix: drop one of them.")
    if run_refs or tag:
        table = _recorded(run_refs, tag, cache_dir)
    elif not names:
        raise UsageError("compare needs PARAMS_SET... (or --runs RUN.../--tag TAG). Fix: experiment compare sweep.")
    else:
        table = _planned(names, overrides, targets, cache_dir, fill, as_json or as_csv)
    if only_changed:
        states = tuple(s for s in states or ("stale", "missing") if s in ("stale", "missing"))
    table = select(table, where=where, sort=sort, states=states or None)
    if as_json:
        click.echo(json.dumps(table.to_dict(), indent=1, default=str))
    elif as_csv:
        click.echo(_csv(table), nl=False)
    else:
        print_table(table)


def _planned(names: tuple[str, ...], overrides: tuple[str, ...], targets: tuple[str, ...], cache_dir: str | None,
             fill: bool, quiet: bool) -> Any:
    from ..api import open_session

    resume_gc()  # before the user's modules are imported
    with stdout_to_stderr(quiet):
        session = open_session(names, overrides=overrides, targets=targets or None, cache_dir=cache_dir)
        if fill:
            result = session.run(desc="compare --fill")
            if not result.ok:
                click.secho(f"error: run {result.run_id} {result.status}: see `experiment show {result.run_id}`.",
                            fg="red", err=True)
                sys.exit(130 if result.status == "interrupted" else 1)
    return session.compare()


def _recorded(run_refs: tuple[str, ...], tag: str | None, cache_dir: str | None) -> Any:
    from ..errors import RecordNotFound
    from ..records.compare import across_runs
    from .records import history

    with history(cache_dir) as records:
        runs = [records.run(ref) for ref in run_refs] if run_refs else records.runs(tag=tag)
        if not runs:
            raise RecordNotFound(f"no recorded run has the tag {tag!r}. Fix: experiment runs lists the runs "
                                 "(experiment tag RUN TAG adds one).")
        return across_runs(records, runs)


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
        colour = {"fresh": "green", "stale": "yellow", "missing": "red", "recorded": ""}[row.state]
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
        click.echo("* best of its column" + ("; metrics of stale rows are from their last result, before what "
                                             "changed" if any(r.state == "stale" for r in table.rows) else ""), err=True)


def register(group: click.Group) -> None:
    """Add ``compare`` to the ``experiment`` group."""
    group.add_command(compare)
