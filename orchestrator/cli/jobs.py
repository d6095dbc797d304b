"""``experiment status RUN`` and ``experiment attach RUN``: the cluster jobs of a (detached) run."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import click

from .options import CONTEXT, handle_errors

__all__ = ["register"]


def _folder(cache_dir: str | None) -> Path:
    """The submitit folder of the project's SLURM executor (where its job registry lives)."""
    from ..project.loader import find_project

    project = find_project()
    configured = project.config.get("executor", {}).get("slurm", {}).get("folder") or "cache/runs/submitit"
    folder = Path(str(configured))
    return folder if folder.is_absolute() else project.root / folder


def _run_id(run: str | None, cache_dir: str | None) -> tuple[str, str]:
    """The full id and the recorded command of ``run`` (a prefix; default the latest run)."""
    from ..records import open_history
    from .records import records_dir

    history = open_history(records_dir(cache_dir))
    try:
        record = history.run(run or "last")
    finally:
        history.close()
    return record.id, record.command


@click.command(context_settings=CONTEXT)
@click.argument("run", required=False)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Artifact store.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead.")
@handle_errors
def status(run: str | None, cache_dir: str | None, as_json: bool) -> None:
    """The cluster jobs of RUN (default: the latest run): queued, running or done."""
    from ..executors.slurmjobs import JobRegistry, age, state_of

    run_id, _ = _run_id(run, cache_dir)
    folder = _folder(cache_dir)
    entries = JobRegistry(folder).of_run(run_id)
    rows: list[dict[str, Any]] = []
    job_class: Any = None
    for entry in entries:
        if job_class is None:
            job_class = _job_class(folder)
        rows.append({"stage": entry.stage, "param_set": entry.param_set, "job": entry.job_id,
                     "state": state_of(job_class(folder=str(folder), job_id=entry.job_id)).lower(),
                     "submitted": age(entry), "key": entry.key})
    if as_json:
        click.echo(json.dumps({"run_id": run_id, "jobs": rows}, indent=1))
        return
    if not rows:
        click.echo(f"run {run_id} submitted no cluster jobs (only --executor slurm does).")
        return
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    click.echo(f"run {run_id}: {len(rows)} jobs (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")")
    columns = ("stage", "param_set", "job", "state")
    widths = [max(len(str(row[c])) for row in rows) for c in columns]
    for row in rows:
        cells = [str(row[c]).ljust(w) for c, w in zip(columns, widths)]
        click.echo("  " + "  ".join(cells) + f"  {row['submitted']} ago")


def _job_class(folder: Path) -> Any:
    """submitit's job class for this machine (SLURM's when sbatch is there, else its local one)."""
    import submitit

    return submitit.AutoExecutor(folder=str(folder))._executor.job_class


@click.command(context_settings=CONTEXT)
@click.argument("run", required=False)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Artifact store.")
@click.pass_context
@handle_errors
def attach(context: click.Context, run: str | None, cache_dir: str | None) -> None:
    """Follow RUN's jobs to the end and go on with the rest: RUN's own command again, without --detach."""
    run_id, command = _run_id(run, cache_dir)
    words = [w for w in shlex.split(command) if w != "--detach"]
    if "run" not in words:
        raise click.UsageError(f"run {run_id} was not started by `experiment run` ({command!r}).")
    args = words[words.index("run") + 1:]
    click.echo(f"attaching to run {run_id}: experiment run {shlex.join(args)}", err=True)
    root = context.find_root()
    run_command = root.command.get_command(root, "run")  # type: ignore[attr-defined]
    with run_command.make_context("run", args, parent=root) as sub:
        run_command.invoke(sub)


def register(group: click.Group) -> None:
    """Add ``status`` and ``attach`` to the ``experiment`` group."""
    group.add_command(status)
    group.add_command(attach)
