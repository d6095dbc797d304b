"""The ``experiment`` commands. Library imports happen inside commands so ``--help`` is instant."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from ..console import resume_gc
from .streams import stdout_failed, stdout_to_stderr, utf8_streams

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
SESSION_COMMANDS = ("run", "plan", "dag")  # they resume the GC themselves, after the library's imports


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into a one-paragraph message and an exit code (2 usage, 1 failure)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..errors import OrchestratorError

        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            result = fn(*args, **kwargs)
            if sys.stdout is not None:
                sys.stdout.flush()  # a full or closed stdout fails here, with a message, not at exit
            return result
        except OrchestratorError as exc:
            if debug:
                raise
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
        except Exception as exc:
            if isinstance(exc, OSError) and stdout_failed(exc):
                sys.exit(1)
            if debug or not _unreachable_store(exc):
                raise
            click.secho(f"error: cannot reach the artifact store ({type(exc).__name__}: {exc}). Fix: check the "
                        "--cache-dir URL, the endpoint and credentials (ORCHESTRATOR_STORAGE_OPTIONS, AWS_*) and "
                        "the network; a local folder needs none of these.", fg="red", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.secho("interrupted", fg="yellow", err=True)
            sys.exit(130)

    return wrapper


def _unreachable_store(exc: BaseException) -> bool:
    """A remote store's client failed to connect (not an orchestrator error, not a bug of ours)."""
    from ..errors import OrchestratorError

    if isinstance(exc, OrchestratorError):
        return False
    module = type(exc).__module__.split(".")[0]
    return module in ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "adlfs") or isinstance(exc, ConnectionError)


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                      help="Artifact store (default: cache/ in the project, or $ORCHESTRATOR_CACHE_DIR).")(fn)
    fn = click.option("--target", "targets", multiple=True, metavar="ARTIFACT",
                      help="Produce only this artifact and what it needs (repeatable).")(fn)
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                      help="Override a param in every set (YAML-typed, dotted keys; repeatable).")(fn)
    fn = click.argument("names", nargs=-1, required=True, metavar="PARAMS_SET...")(fn)
    return fn


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

    from .plain import LogHandler

    utf8_streams()
    try:
        os.getcwd()
    except OSError:
        click.secho("error: the working directory no longer exists (it was deleted or moved after this shell "
                    "entered it). Fix: cd into the project folder again, e.g. cd \"$PWD\".", fg="red", err=True)
        sys.exit(2)
    if click.get_current_context().invoked_subcommand not in SESSION_COMMANDS:
        resume_gc()  # (console.py)
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


class ShardType(click.ParamType):
    """``I/N``: this process's share of every map stage's items."""

    name = "I/N"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        index, sep, count = str(value).partition("/")
        if not sep or not index.isdigit() or not count.isdigit():
            self.fail(f"{value!r} is not I/N (e.g. --shard 1/4)", param, ctx)
        i, n = int(index), int(count)
        if n < 1 or not 1 <= i <= n:
            self.fail(f"{value!r}: I must be between 1 and N (got {i} of {n}). Fix: --shard 1/{max(n, 1)} ... "
                      f"--shard {max(n, 1)}/{max(n, 1)}", param, ctx)
        return i, n


def _run_options(workers: int | None, shard: tuple[int, int] | None, max_item_failures: int | None,
                 devices: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if workers is not None:
        options["workers"] = workers
    if shard is not None:
        options["shard"] = shard
    if max_item_failures is not None:
        options["max_item_failures"] = max_item_failures
    if devices:
        options["devices"] = [d.strip() for d in devices.split(",") if d.strip()]
    return options


@main.command(context_settings=CONTEXT)
@_common
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
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Stages run at once (implies --executor process when > 1).")
@click.option("--address", default=None, help="Cluster address for --executor dask/ray.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary instead.")
@click.option("--desc", default="", metavar="TEXT", help="Describe the run (the title of its record and report).")
@click.option("--strict-data", is_flag=True,
              help="Fail a stage that reads a file its key does not cover (default: warn).")
@_handle_errors
def run(names: tuple[str, ...], overrides: tuple[str, ...], targets: tuple[str, ...], cache_dir: str | None,
        force: tuple[str, ...], workers: int | None, shard: tuple[int, int] | None, max_item_failures: int | None,
        devices: str | None, dry_run: bool, keep_going: bool, executor: str, jobs: int | None,
        address: str | None, as_json: bool, desc: str, strict_data: bool) -> None:
    """Run the experiment PARAMS_SET... (files in params/): only what is missing or stale."""
    from ..api import open_session
    from . import plain

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
    if jobs and jobs > 1 and executor == "local":
        executor = "process"
    engine_options = dict(session.project.config.get("executor", {}).get(executor, {}))
    engine_options.update({k: v for k, v in (("jobs", jobs), ("address", address)) if v is not None})
    with observer, stdout_to_stderr(as_json):
        result = session.run(force=force, executor=executor, keep_going=keep_going,
                             observer=None if as_json else observer, executor_options=engine_options,
                             options={**_run_options(workers, shard, max_item_failures, devices),
                                      **({"strict_data": True} if strict_data else {})}, desc=desc)
    from ..records import report_path

    report = report_path(session.store.root, result.run_id)
    if as_json:
        summary = plain.result_json(result)
        summary["report"] = str(report) if report.exists() else None
        click.echo(json.dumps(summary, indent=1))
    else:
        context = click.get_current_context()
        command = plain.resume_command(context.command, context.params)
        if plain.terminal(sys.stdout):
            from . import render

            render.summary(result, command)
        else:
            plain.summary(result, command)
        if report.exists():
            click.echo(f"report: {report}")
    if result.status == "interrupted":
        sys.exit(130)
    if not result.ok:
        sys.exit(1)


@main.command(context_settings=CONTEXT)
@_common
@click.option("--force", multiple=True, metavar="STAGE", help="Plan as if this stage were forced.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@_handle_errors
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
@_common
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "dot", "json"]), default="text",
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json: stages, edges and nodes.")
@_handle_errors
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
@_handle_errors
def params(names: tuple[str, ...], overrides: tuple[str, ...], as_json: bool) -> None:
    """Print the resolved param sets of PARAMS_SET..."""
    from ..project.params import load_experiment
    from ..project.loader import find_project
    from . import render

    experiment = load_experiment(find_project().params_dir, names, overrides)
    render.param_sets(experiment, as_json=as_json)


@main.group(context_settings=CONTEXT)
def cache() -> None:
    """Inspect the artifact store."""


@cache.command("ls", context_settings=CONTEXT)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Artifact store.")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
@_handle_errors
def cache_ls(cache_dir: str | None, as_json: bool) -> None:
    """List stored artifacts: stage, param set, artifact, size, age."""
    from ..project.loader import find_project
    from ..store.base import open_store
    from . import render

    store = open_store(find_project().cache_dir(cache_dir))
    render.cache_listing(store, as_json=as_json)


from .records import register as _register_records  # noqa: E402  (the run-record commands)

_register_records(main)


@cache.command("verify", context_settings=CONTEXT)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Artifact store.")
@click.option("--repair", is_flag=True, help="Forget broken artifacts so the next run recomputes them.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@_handle_errors
def cache_verify(cache_dir: str | None, repair: bool, as_json: bool) -> None:
    """Check every stored artifact against its content hash (exit 1 when any is broken)."""
    from ..project.loader import find_project
    from ..store.base import open_store
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
@_handle_errors
def cache_gc(cache_dir: str | None, keep_last: int | None, older_than: str | None, max_size: str | None,
             dry_run: bool, as_json: bool) -> None:
    """Remove artifacts no kept run can reach (safe while other runs are writing)."""
    from dataclasses import asdict

    from ..store.gc import collect_garbage
    from ..project.loader import find_project
    from ..store.base import open_store

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
