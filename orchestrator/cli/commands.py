"""The ``experiment`` commands. Library imports happen inside commands so ``--help`` is instant."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any

import click

from .options import (
    CONTEXT,
    SESSION_COMMANDS,
    JobsType,
    ShardType,
    handle_errors,
    run_options,
    session_arguments,
)
from .startup import resume_gc
from .streams import stdout_to_stderr, utf8_streams


@click.group(context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug logs).")
@click.version_option(package_name="orchestrator")
def main(debug: bool, verbose: int) -> None:
    """Run experiments as a DAG of cached stages.

    \b
    experiment run baseline          run what is missing or stale
    experiment plan baseline         what would run, and why
    experiment params sweep          the resolved param sets
    experiment dag baseline          the stages and how they connect
    experiment cache ls              what the store holds
    """
    import logging

    from .loghandler import LogHandler

    utf8_streams()
    try:
        os.getcwd()
    except OSError:
        click.secho("error: the working directory no longer exists (it was deleted or moved after this shell "
                    "entered it). Fix: cd into the project folder again, e.g. cd \"$PWD\".", fg="red", err=True)
        sys.exit(2)
    if click.get_current_context().invoked_subcommand not in SESSION_COMMANDS:
        resume_gc()  # (startup.py)
    level = logging.WARNING - 10 * min(verbose, 2)
    root = logging.getLogger("orchestrator")
    root.setLevel(level)
    # what stages log through ctx.logger is theirs to show (and to keep in their logs), like print
    logging.getLogger("orchestrator.stage").setLevel(min(level, logging.INFO))
    if not any(isinstance(h, LogHandler) for h in root.handlers):
        root.addHandler(LogHandler())
    # stage logs keep INFO records of any library (capture.py); the root logger has no handler here, so
    # this shows nothing more, and spares each stage two setLevel calls that clear every logger's cache
    logging.getLogger().setLevel(logging.INFO)


@main.command(context_settings=CONTEXT)
@session_arguments
@click.option("--force", multiple=True, metavar="STAGE", help="Rerun this stage even if cached (repeatable).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Processes per map stage (default: number of cores; 0 runs items in-process).")
@click.option("--shard", type=ShardType(), default=None,
              help="Compute only share I of N of every map stage's items (stops before stages needing all).")
@click.option("--max-item-failures", type=click.IntRange(min=0), default=None,
              help="Accept up to N failed items per map stage (their results are None).")
@click.option("--devices", default=None, metavar="DEV,DEV",
              help="One map worker per device, e.g. cuda:0,cuda:1 (ctx.device).")
@click.option("--dry-run", is_flag=True, help="Only show the plan (same as `experiment plan`).")
@click.option("--keep-going", is_flag=True, help="After a failure, still run every branch that does not depend on it.")
@click.option("--executor", default="local", show_default=True,
              help="Where stages run: local (in-process), process, dask, ray, slurm.")
@click.option("-j", "--jobs", type=JobsType(), default=None,
              help="Stages run at once, or 'auto': as many as the node's GPUs, cores and memory admit "
                   "(implies --executor process when not 1).")
@click.option("--gpus", default=None, metavar="0,1,..|none",
              help="GPUs this run may hand out (default: [tool.orchestrator] gpus, else nvidia-smi's).")
@click.option("--address", default=None, help="Cluster address for --executor dask/ray.")
@click.option("--detach", is_flag=True,
              help="Submit the stages that can start, then exit (--executor slurm); `experiment status RUN` "
                   "follows them, and running again re-attaches.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary instead.")
@click.option("--desc", default="", metavar="TEXT", help="Describe the run (the title of its record and report).")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Tag the run (repeatable; experiment runs --tag TAG).")
@click.option("--track", "trackers", multiple=True, type=click.Choice(["mlflow", "tensorboard"]),
              help="Then export the run there (experiment export; repeatable).")
@click.option("--strict-data", is_flag=True,
              help="Fail a stage that reads a file its key does not cover (default: warn).")
@handle_errors
def run(names: tuple[str, ...], overrides: tuple[str, ...], targets: tuple[str, ...], cache_dir: str | None,
        force: tuple[str, ...], workers: int | None, shard: tuple[int, int] | None, max_item_failures: int | None,
        devices: str | None, dry_run: bool, keep_going: bool, executor: str, jobs: int | str | None, gpus: str | None,
        address: str | None, as_json: bool, desc: str, tags: tuple[str, ...], trackers: tuple[str, ...],
        strict_data: bool, detach: bool) -> None:
    """Run the experiment PARAMS_SET... (files in params/): only what is missing or stale."""
    from ..api import open_session
    from ..records.annotations import check_tags
    from . import plain

    tags = check_tags(tags)  # a bad tag is a usage error before anything runs
    resume_gc()  # before the user's modules are imported
    with stdout_to_stderr(as_json):  # with --json, stdout carries the JSON document only
        session = open_session(names, overrides=overrides, targets=targets or None, cache_dir=cache_dir)
    if dry_run:
        from . import render

        render.plan(session, session.plan(force), as_json=as_json)
        return
    if as_json:
        observer: Any = contextlib.nullcontext()
    elif plain.terminal(sys.stderr):
        from . import render

        observer = render.ProgressObserver(session)
    else:  # a log file or a pipe: plain text, no rich
        observer = plain.StatusLines(session.dag)
    if jobs and jobs != 1 and executor == "local":
        executor = "process"
    engine_options = dict(session.project.config.get("executor", {}).get(executor, {}))
    engine_options.update({k: v for k, v in (("jobs", jobs), ("address", address)) if v is not None})
    with observer, stdout_to_stderr(as_json):
        result = session.run(force=force, executor=executor, keep_going=keep_going,
                             observer=None if as_json else observer, executor_options=engine_options,
                             options=run_options(workers, shard, max_item_failures, devices, strict_data), desc=desc,
                             tags=tags, gpus=gpus, detach=detach)
    from ..records import report_path
    from .searchview import print_search, read_summary

    report = report_path(session.store.root, result.run_id)
    searched = read_summary(report) if session.experiment.search is not None else None
    if as_json:
        summary = plain.result_json(result)
        summary["report"] = str(report) if report.exists() else None
        if searched is not None:
            summary["search"] = searched
        click.echo(json.dumps(summary, indent=1))
    else:
        context = click.get_current_context()
        command = plain.resume_command(context.command, context.params, skip=("force", "dry_run", "detach"))
        if plain.terminal(sys.stdout):
            from . import render

            render.summary(result, command)
        else:
            plain.summary(result, command)
        if searched is not None:
            print_search(searched)
        elif result.ok and len(session.experiment.sets) > 1 and _reports_metrics(session, result):
            from .compare import (
                print_table,  # a sweep ends with its sets side by side (experiment compare)
            )

            print_table(session.compare())
        if report.exists():
            click.echo(f"report: {report}")
    for tracker in trackers:  # (the run is recorded, whatever its outcome: a failed run is worth a look too)
        from .export import export_run

        click.echo(export_run(tracker, session.store.root, result.run_id), err=as_json)
    if result.status == "interrupted":
        sys.exit(130)
    if not result.ok:
        sys.exit(1)


def _reports_metrics(session: Any, result: Any) -> bool:
    return any(o.extras.get("metrics") for o in result.outcomes) or any(
        s.options.get("metrics") for s in session.stages.values())


@main.command(context_settings=CONTEXT)
@session_arguments
@click.option("--force", multiple=True, metavar="STAGE", help="Plan as if this stage were forced.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@handle_errors
def plan(names: tuple[str, ...], overrides: tuple[str, ...], targets: tuple[str, ...], cache_dir: str | None,
         force: tuple[str, ...], as_json: bool) -> None:
    """Show what `experiment run` would do per stage and param set, and why."""
    from ..api import open_session
    from . import render

    resume_gc()  # before the user's modules are imported
    with stdout_to_stderr(as_json):  # a module that prints when imported stays out of the JSON
        session = open_session(names, overrides=overrides, targets=targets or None, cache_dir=cache_dir)
    render.plan(session, session.plan(force), as_json=as_json)


@main.command(context_settings=CONTEXT)
@session_arguments
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "dot", "json"]), default="text",
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json: stages, edges and nodes.")
@handle_errors
def dag(names: tuple[str, ...], overrides: tuple[str, ...], targets: tuple[str, ...], cache_dir: str | None,
        fmt: str, as_json: bool) -> None:
    """Show the stages of an experiment and the artifacts that connect them."""
    from ..api import open_session
    from . import render

    resume_gc()  # before the user's modules are imported
    session = open_session(names, overrides=overrides, targets=targets or None, cache_dir=cache_dir)
    click.echo(render.dag_text(session, "json" if as_json else fmt))


@main.command(context_settings=CONTEXT)
@click.argument("names", nargs=-1, required=True, metavar="PARAMS_SET...")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a param in every set.")
@click.option("--json", "as_json", is_flag=True, help="Print the sets as JSON.")
@handle_errors
def params(names: tuple[str, ...], overrides: tuple[str, ...], as_json: bool) -> None:
    """Print the resolved param sets of PARAMS_SET..."""
    from ..project.loader import find_project
    from ..project.params import load_experiment
    from . import render

    project = find_project()
    experiment = load_experiment(project.params_dir, names, overrides)
    if experiment.search is not None:  # its sets are the trials asked so far, kept in the store
        from ..search.trials import with_trials
        from ..store.location import open_store

        experiment = with_trials(experiment, open_store(project.cache_dir(None)).root)
    render.param_sets(experiment, as_json=as_json)


@main.group(context_settings=CONTEXT)
def cache() -> None:
    """Inspect the artifact store."""


@cache.command("ls", context_settings=CONTEXT)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Artifact store.")
@click.option("--stage", default=None, metavar="STAGE", help="Only this stage's artifacts.")
@click.option("--artifact", "artifact_name", default=None, metavar="NAME", help="Only artifacts with this name.")
@click.option("--set", "param_set", default=None, metavar="NAME", help="Only this param set's artifacts.")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
@handle_errors
def cache_ls(cache_dir: str | None, stage: str | None, artifact_name: str | None, param_set: str | None,
             as_json: bool) -> None:
    """List stored artifacts: stage, param set, artifact, size, age."""
    from ..project.loader import find_project
    from ..store.location import open_store
    from . import render

    store = open_store(find_project().cache_dir(cache_dir))
    render.cache_listing(store, as_json=as_json, stage=stage, artifact_name=artifact_name, param_set=param_set)


from .compare import register as _register_compare  # noqa: E402  (compare)
from .export import register as _register_export  # noqa: E402  (export)
from .jobs import register as _register_jobs  # noqa: E402  (status, attach)
from .records import register as _register_records  # noqa: E402  (the run-record commands)

_register_compare(main)
_register_export(main)
_register_jobs(main)
_register_records(main)


@cache.command("verify", context_settings=CONTEXT)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Artifact store.")
@click.option("--repair", is_flag=True, help="Forget broken artifacts so the next run recomputes them.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@handle_errors
def cache_verify(cache_dir: str | None, repair: bool, as_json: bool) -> None:
    """Check every stored artifact against its content hash (exit 1 when any is broken)."""
    from ..project.loader import find_project
    from ..store.location import open_store
    from ..store.verify import verify_store
    from . import render

    report = verify_store(open_store(find_project().cache_dir(cache_dir)), repair=repair)
    render.verify_report(report, as_json=as_json)
    if report.problems and not repair:
        sys.exit(1)


def _duration(text: str | None) -> float | None:
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    value, unit = text[:-1], text[-1:].lower()
    if unit not in units or not value.replace(".", "", 1).isdigit():
        raise click.BadParameter(f"{text!r} is not a duration like 30d, 12h or 45m", param_hint="--older-than")
    return float(value) * units[unit]


def _size(text: str | None) -> int | None:
    if text is None:
        return None
    from ..executors.resources import memory_bytes

    try:
        return memory_bytes({"mem": text})
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-size") from exc


@cache.command("gc", context_settings=CONTEXT)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Artifact store.")
@click.option("--keep-last", type=click.IntRange(min=0), default=None, help="Keep the results of the newest N runs.")
@click.option("--older-than", default=None, metavar="AGE", help="Remove what only runs older than AGE (30d, 12h) use.")
@click.option("--max-size", default=None, metavar="SIZE", help="Then drop the oldest results until the store fits (50G).")
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def cache_gc(cache_dir: str | None, keep_last: int | None, older_than: str | None, max_size: str | None,
             dry_run: bool, as_json: bool) -> None:
    """Remove artifacts no kept run can reach (safe while other runs are writing)."""
    from dataclasses import asdict

    from ..project.loader import find_project
    from ..store.gc import collect_garbage
    from ..store.location import open_store

    store = open_store(find_project().cache_dir(cache_dir))
    report = collect_garbage(store, keep_last=keep_last, older_than=_duration(older_than),
                             max_size=_size(max_size), dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(asdict(report), indent=1))
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {report.dropped_objects} objects ({report.freed_bytes / 1024**2:.1f} MiB), "
               f"{report.dropped_keys} cached results, {report.dropped_segments} map segments and "
               f"{report.dropped_attempts} old attempt folders; "
               f"kept {report.kept_runs} runs' results ({report.kept_bytes / 1024**2:.1f} MiB)")
