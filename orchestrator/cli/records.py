"""The run-record commands: runs, show, explain, lineage, diff, log, report, ui.

Thin like the rest of the CLI: parse, call one function of :mod:`orchestrator.records`,
render. Library imports happen inside the commands, so ``experiment --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .options import CONTEXT, handle_errors

if TYPE_CHECKING:
    from ..records.history import History

__all__ = ["register"]

RUN_HELP = "A run id, a unique prefix of one, or 'last' ('last~1' the one before)."


def _cache_option(fn: Any) -> Any:
    return click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                        help="Artifact store holding the run records (default: the project's).")(fn)


def _json_option(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead.")(fn)


def records_dir(cache_dir: str | None) -> Path:
    """Where the run records of the project's store (or of ``cache_dir``) live."""
    from ..project.loader import find_project

    location = find_project().cache_dir(cache_dir)
    if isinstance(location, str):  # a remote store keeps its run records in its local working folder
        from ..store.location import open_store

        location = open_store(location).root
    return Path(location)


def history(cache_dir: str | None) -> History:
    """The run records of the project's store (or of ``cache_dir``)."""
    from ..records import open_history

    return open_history(records_dir(cache_dir))


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=1, default=str))


@click.command(context_settings=CONTEXT)
@click.option("--limit", "-n", type=click.IntRange(min=1), default=20, show_default=True, help="How many runs.")
@click.option("--status", type=click.Choice(["running", "succeeded", "failed", "interrupted"]), default=None,
              help="Only runs that ended this way (a killed run counts as interrupted).")
@click.option("--tag", default=None, metavar="TAG", help="Only runs with this tag.")
@_cache_option
@_json_option
@handle_errors
def runs(limit: int, status: str | None, tag: str | None, cache_dir: str | None, as_json: bool) -> None:
    """List recorded runs, newest first."""
    from . import records_view as view

    with history(cache_dir) as records:
        found = records.runs(limit=limit, status=status, tag=tag)
        if as_json:
            _echo_json([view.run_json(r) for r in found])
        else:
            view.runs_table(found, str(records.path))


@click.command(context_settings=CONTEXT)
@click.argument("run", metavar="RUN")
@_cache_option
@_json_option
@handle_errors
def show(run: str, cache_dir: str | None, as_json: bool) -> None:
    """Show a run: params, stages, timings, artifacts, failures.

    RUN is a run id, a unique prefix of one, or 'last'.
    """
    from . import records_view as view

    with history(cache_dir) as records:
        record = records.run(run)
        executions = records.executions(record)
        if as_json:
            _echo_json(view.run_json(record, executions))
        else:
            view.show(record, executions)


@click.command(context_settings=CONTEXT)
@click.argument("stage")
@click.option("--set", "param_set", metavar="NAME", default=None, help="Only this param set.")
@click.option("--run", "run", metavar="RUN", default=None, help=f"{RUN_HELP} Default: the last run with STAGE.")
@_cache_option
@_json_option
@handle_errors
def explain(stage: str, param_set: str | None, run: str | None, cache_dir: str | None, as_json: bool) -> None:
    """Why STAGE ran or was cached: what changed since its last execution that stored a result."""
    from ..records import explain as explain_stage
    from . import records_view as view

    with history(cache_dir) as records:
        items = explain_stage(records, stage, param_set=param_set, run=run)
        if as_json:
            _echo_json([item.to_dict() for item in items])
        else:
            view.explanations(items)


@click.command(context_settings=CONTEXT)
@click.argument("name", metavar="ARTIFACT")
@click.option("--set", "param_set", metavar="NAME", default=None, help="The param set (required when several have it).")
@click.option("--run", "run", metavar="RUN", default=None, help=f"{RUN_HELP} Default: the last run with ARTIFACT.")
@click.option("--path", "as_path", is_flag=True, help="Print the stored file's path only (for other tools).")
@_cache_option
@_json_option
@handle_errors
def artifact(name: str, param_set: str | None, run: str | None, as_path: bool, cache_dir: str | None,
             as_json: bool) -> None:
    """Print a stored artifact as a person wants to see it: a table's head and shape, a dict as JSON, an
    array's shape and summary, a file's path and size."""
    from ..errors import RecordNotFound
    from ..project.loader import find_project
    from ..records.provenance import find_artifact
    from ..store.artifactio import load_artifact
    from ..store.location import open_store
    from .artifact_view import describe_value, jsonable

    with history(cache_dir) as records:
        record, execution = find_artifact(records, name, run=run, param_set=param_set)
    store = open_store(find_project().cache_dir(cache_dir))
    key_record = store.get_record(execution.key or "")
    if key_record is None or name not in key_record.outputs:
        raise RecordNotFound(f"artifact {name!r} of {execution.stage} [{execution.param_set}] (run {record.id}) is no "
                             f"longer in the store (collected by cache gc). Fix: experiment run it again.")
    stored = key_record.outputs[name]
    if as_path:
        click.echo(str(store.verified_path(stored, stage=execution.stage, param_set=execution.param_set)))
        return
    value = load_artifact(store, stored, as_path=False, stage=execution.stage, param_set=execution.param_set)
    if as_json:
        _echo_json({"artifact": name, "stage": execution.stage, "set": execution.param_set, "run": record.id,
                    "cacher": stored.cacher, "size": stored.size, "type": type(value).__name__,
                    "value": jsonable(value)})
        return
    click.echo(f"{name} of {execution.stage} [{execution.param_set}], run {record.id} ({stored.cacher})", err=True)
    click.echo(describe_value(value))


@click.command(context_settings=CONTEXT)
@click.argument("artifact", metavar="ARTIFACT_OR_HASH")
@click.option("--run", "run", metavar="RUN", default=None, help=f"For an artifact name: {RUN_HELP}")
@click.option("--set", "param_set", metavar="NAME", default=None, help="For an artifact name: only this param set.")
@_cache_option
@_json_option
@handle_errors
def lineage(artifact: str, run: str | None, param_set: str | None, cache_dir: str | None, as_json: bool) -> None:
    """Where an artifact came from: the run, stage, params and inputs that produced it, back to the data."""
    from ..records import lineage as trace
    from . import records_view as view

    with history(cache_dir) as records:
        trees = trace(records, artifact, run=run, param_set=param_set)
        if as_json:
            _echo_json([tree.to_dict() for tree in trees])
        else:
            view.lineage(trees)


@click.command(context_settings=CONTEXT)
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@_cache_option
@_json_option
@handle_errors
def diff(run_a: str, run_b: str, cache_dir: str | None, as_json: bool) -> None:
    """What changed between two runs: params, code, packages, artifact hashes, metrics."""
    from ..records import run_diff
    from . import records_view as view

    with history(cache_dir) as records:
        data = run_diff(records, run_a, run_b)
        if as_json:
            _echo_json(data)
        else:
            view.diff(data)


@click.command(context_settings=CONTEXT)
@click.argument("run", metavar="RUN")
@click.argument("stage")
@click.option("--set", "param_set", metavar="NAME", default=None, help="Only this param set.")
@_cache_option
@_json_option
@handle_errors
def log(run: str, stage: str, param_set: str | None, cache_dir: str | None, as_json: bool) -> None:
    """Print what STAGE printed and logged in RUN (for a cached stage: in the run that computed it)."""
    from ..records.logs import stage_logs

    with history(cache_dir) as records:
        found = stage_logs(records, run, stage, param_set)
    if as_json:
        _echo_json([entry.to_dict() for entry in found])
        return
    for entry in found:
        if len(found) > 1 or entry.note:
            click.secho(f"== {entry.stage} [{entry.param_set}] {entry.note}".rstrip(), fg="cyan", err=True)
        sys.stdout.write(entry.text)
        sys.stdout.flush()


@click.command(context_settings=CONTEXT)
@click.argument("run", metavar="RUN")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Where to write it (default: <cache>/runs/<run>/report.html).")
@_cache_option
@handle_errors
def report(run: str, output: str | None, cache_dir: str | None) -> None:
    """Write the self-contained HTML report of RUN and print its path."""
    from ..records import report_path, write_report

    with history(cache_dir) as records:
        record = records.run(run)
        path = Path(output) if output else report_path(records.path.parent, record.id)
        write_report(records, record, path)
    click.echo(str(path.resolve()))


@click.command(context_settings=CONTEXT)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@_cache_option
@handle_errors
def ui(port: int, cache_dir: str | None) -> None:
    """Browse runs and reports in a web browser (served on 127.0.0.1 only; Ctrl-C stops)."""
    from ..records.server import make_server

    server = make_server(history(cache_dir).path, port=port)
    host, bound = str(server.server_address[0]), int(server.server_address[1])
    click.echo(f"serving the run records at http://{host}:{bound}/ (Ctrl-C to stop)")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@click.command(context_settings=CONTEXT)
@click.argument("run", metavar="RUN")
@click.argument("tags", nargs=-1, required=True, metavar="TAG...")
@click.option("--remove", is_flag=True, help="Remove these tags instead.")
@_cache_option
@handle_errors
def tag(run: str, tags: tuple[str, ...], remove: bool, cache_dir: str | None) -> None:
    """Tag a run (experiment runs --tag TAG finds it again). RUN is an id, a prefix of one, or 'last'."""
    from ..records.annotations import tag_run

    record = tag_run(records_dir(cache_dir), run, tags, remove=remove)
    click.echo(f"run {record.id}: {', '.join(record.tags) or 'no tags'}")


@click.command(context_settings=CONTEXT)
@click.argument("run", metavar="RUN")
@click.argument("text", metavar="TEXT")
@_cache_option
@handle_errors
def note(run: str, text: str, cache_dir: str | None) -> None:
    """Add a dated note to a run (shown by experiment show RUN)."""
    from ..records.annotations import note_run

    record = note_run(records_dir(cache_dir), run, text)
    click.echo(f"run {record.id}: {len(record.notes)} note{'s' if len(record.notes) != 1 else ''}")


def register(group: click.Group) -> None:
    """Add the run-record commands to the ``experiment`` group."""
    for command in (runs, show, artifact, tag, note, explain, lineage, diff, log, report, ui):
        group.add_command(command)
