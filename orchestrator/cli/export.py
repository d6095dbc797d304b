"""``experiment export mlflow|tensorboard RUN``: a recorded run in the trackers people already use."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .options import CONTEXT, handle_errors

__all__ = ["default_logdir", "default_tracking_uri", "export_run", "register"]

TRACKERS = ("mlflow", "tensorboard")


def default_tracking_uri(records: Path) -> str:
    """``$MLFLOW_TRACKING_URI``, else ``mlruns/`` in the cache folder (MLflow's file store: no server)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or str(records / "mlruns")


def default_logdir(records: Path) -> Path:
    return records / "tensorboard"


def export_run(tracker: str, records: Path, run: str, destination: str | None = None) -> str:
    """Export ``run`` of the run records in ``records``; returns a line saying where it went."""
    from ..records import open_history
    from ..records.export import export_mlflow, export_tensorboard

    with open_history(records) as history:
        if tracker == "mlflow":
            uri = destination or default_tracking_uri(records)
            ids = export_mlflow(history, run, uri)
            return f"mlflow: {len(ids)} stage runs logged to {uri} (mlflow ui --backend-store-uri {uri})"
        logdir = Path(destination) if destination else default_logdir(records)
        folders = export_tensorboard(history, run, logdir)
        return f"tensorboard: {len(folders)} event folders under {logdir} (tensorboard --logdir {logdir})"


@click.group(context_settings=CONTEXT)
def export() -> None:
    """Export a recorded run to MLflow or TensorBoard."""


@export.command("mlflow", context_settings=CONTEXT)
@click.argument("run", metavar="RUN")
@click.option("--tracking-uri", default=None, metavar="URI",
              help="Where to log (default: $MLFLOW_TRACKING_URI, else cache/mlruns: a local folder, no server).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Artifact store.")
@handle_errors
def export_mlflow(run: str, tracking_uri: str | None, cache_dir: str | None) -> None:
    """Log each stage execution of RUN as an MLflow run: params, metrics with steps, tags."""
    from .records import records_dir

    click.echo(export_run("mlflow", records_dir(cache_dir), run, tracking_uri))


@export.command("tensorboard", context_settings=CONTEXT)
@click.argument("run", metavar="RUN")
@click.option("--logdir", default=None, metavar="DIR", help="Event files go here (default: cache/tensorboard).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Artifact store.")
@handle_errors
def export_tensorboard(run: str, logdir: str | None, cache_dir: str | None) -> None:
    """Write RUN's metrics as TensorBoard scalars, one folder per param set and stage."""
    from .records import records_dir

    click.echo(export_run("tensorboard", records_dir(cache_dir), run, logdir))


def register(group: click.Group) -> None:
    """Add ``export`` to the ``experiment`` group."""
    group.add_command(export)
