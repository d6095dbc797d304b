"""A recorded run in MLflow (its file store, read back with MlflowClient) and TensorBoard (read back with its
event reader): params, metrics with their steps, tags."""

from __future__ import annotations

import os

from test_compare import FILES


def test_export_to_mlflow_reads_back_with_mlflows_own_client(make_project, tmp_path):
    proj = make_project(FILES)
    run_id = proj.run_json("sweep")["run_id"]
    uri = (tmp_path / "mlruns").as_uri()
    out = proj.experiment("export", "mlflow", "last", "--tracking-uri", uri).stdout
    assert "8 stage runs logged" in out  # fit and evaluate for each of the 4 sets

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("sweep")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert len(runs) == 8
    fit = next(r for r in runs if r.data.tags["orchestrator.stage"] == "fit"
               and r.data.tags["orchestrator.param_set"] == "sweep[lr=0.5,depth=4]")
    assert fit.data.params["lr"] == "0.5" and fit.data.params["depth"] == "4"
    assert fit.data.tags["orchestrator.run_id"] == run_id and len(fit.data.tags["orchestrator.key"]) == 32
    history = client.get_metric_history(fit.info.run_id, "train_loss")
    assert [m.step for m in history] == [0, 1, 2] and history[-1].value == fit.data.metrics["train_loss"]
    evaluate = next(r for r in runs if r.data.tags["orchestrator.stage"] == "evaluate")
    assert 0 < evaluate.data.metrics["scores.accuracy"] <= 1  # a declared metrics output


def test_run_track_tensorboard_writes_scalars_its_reader_sees(make_project):
    proj = make_project(FILES)
    summary = proj.run_json("sweep", "--track", "tensorboard")
    folder = proj.root / "cache" / "tensorboard" / summary["run_id"] / "sweep[lr=0.1,depth=2]" / "fit"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    losses = events.Scalars("train_loss")
    assert [s.step for s in losses] == [0, 1, 2]
    assert losses[0].value > losses[-1].value  # (the loss falls)
