"""Export a recorded run to the trackers people already use: MLflow and TensorBoard.

Each stage execution of the run (each node: a stage for a param set) that ran or was served from
the cache becomes one MLflow run in an experiment named after the run's param files, with the
params its key took, its ``ctx.metric`` series (with their steps) and the numbers of its declared
metrics outputs, tagged with the stage, param set, key and orchestrator run id. TensorBoard gets
the same scalars, one event folder per param set and stage. Both read from the run records only,
so any past run can be exported; the packages are optional extras (``orchestrator[mlflow]``,
``orchestrator[tensorboard]``) imported only here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .history import History
from .report import flatten
from .values import ExecutionRecord, RunRecord

__all__ = ["export_mlflow", "export_tensorboard"]

_UNSAFE = re.compile(r"[^\w\-. /]")  # what MLflow accepts in metric and param names
_BATCH = 900  # MLflow takes at most 1000 metrics per batch
_TAG = "orchestrator" + "."  # MLflow tags: orchestrator.stage, .param_set, .key, .run_id, .status


def _points(e: ExecutionRecord) -> Iterator[tuple[str, float, int, float | None]]:
    """(name, value, step, time) of every metric an execution reported, declared metrics outputs at step 0."""
    for index, entry in enumerate((e.extras or {}).get("metrics", ())):
        step = entry.get("step")
        yield str(entry.get("name")), float(entry.get("value")), int(step if step is not None else index), entry.get("time")
    for report in (e.extras or {}).get("reports", ()):
        if report.get("kind") == "metrics":
            for key, value in dict(report.get("values") or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    yield f"{report.get('name')}.{key}", float(value), 0, None


def _executions(history: History, ref: str) -> tuple[RunRecord, list[ExecutionRecord]]:
    record = history.run(ref)
    return record, [e for e in history.executions(record) if e.status in ("ran", "cached")]


def _experiment_name(record: RunRecord) -> str:
    return " + ".join(str(n) for n in record.experiment.get("names", ())) or "orchestrator"


def export_mlflow(history: History, ref: str, tracking_uri: str) -> list[str]:
    """Log run ``ref`` to MLflow at ``tracking_uri`` (a local folder works: no server); returns the MLflow run ids."""
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UsageError("exporting to MLflow needs the mlflow package. Fix: pip install 'orchestrator[mlflow]' "
                         "(or mlflow-skinny).") from None
    if "://" not in tracking_uri or tracking_uri.startswith("file:"):  # a folder: MLflow's file store, no server
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        tracking_uri = tracking_uri if tracking_uri.startswith("file:") else Path(tracking_uri).resolve().as_uri()
    record, executions = _executions(history, ref)
    client = MlflowClient(tracking_uri=tracking_uri)
    name = _experiment_name(record)
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(name)
    created = []
    for e in executions:
        tags = {f"{_TAG}{k}": v for k, v in (("stage", e.stage), ("param_set", e.param_set), ("key", e.key or ""),
                                              ("run_id", record.id), ("status", e.status))}
        run = client.create_run(experiment_id, tags=tags, run_name=f"{e.stage} [{e.param_set}]",
                                start_time=int((e.started or record.started) * 1000))
        params = [Param(_UNSAFE.sub("_", k)[:250], str(v)[:500])
                  for k, v in _params(e).items()]
        default_time = int((e.ended or e.started or record.started) * 1000)
        metrics = [Metric(_UNSAFE.sub("_", n)[:250], v, int(t * 1000) if t else default_time, step)
                   for n, v, step, t in _points(e)]
        client.log_batch(run.info.run_id, tags=[RunTag("mlflow.note.content", record.title)])
        for start in range(0, len(params), 100):  # (MLflow's limits per batch)
            client.log_batch(run.info.run_id, params=params[start:start + 100])
        for start in range(0, len(metrics), _BATCH):
            client.log_batch(run.info.run_id, metrics=metrics[start:start + _BATCH])
        client.set_terminated(run.info.run_id, "FINISHED", end_time=int((e.ended or e.started or record.started) * 1000))
        created.append(run.info.run_id)
    return created


def export_tensorboard(history: History, ref: str, logdir: Path) -> list[Path]:
    """Write run ``ref``'s metrics as TensorBoard scalars under ``logdir/<run id>/<param set>/<stage>``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError("exporting to TensorBoard needs torch and tensorboard. Fix: pip install "
                         "'orchestrator[tensorboard]'.") from None
    record, executions = _executions(history, ref)
    written = []
    for e in executions:
        points = list(_points(e))
        if not points:
            continue
        folder = Path(logdir) / record.id / re.sub(r"[/\\\0]", "_", e.param_set) / e.stage  # (TensorBoard's run names)
        writer = SummaryWriter(log_dir=str(folder))
        try:
            for name, value, step, when in points:
                writer.add_scalar(name, value, step, walltime=when)
        finally:
            writer.close()
        written.append(folder)
    return written


def _params(e: ExecutionRecord) -> Mapping[str, Any]:
    return flatten(dict((e.parts or {}).get("params", {})))
