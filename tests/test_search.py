"""Hyperparameter search on the cache: each trial is a param set; resumable, re-scorable, prunable."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from orchestrator.errors import ParamsError
from orchestrator.project.searchspace import parse_search

STAGES = '''
import os, time
from orchestrator import stage

def log(line):
    with open(os.environ["RUNS_LOG"], "a") as f:
        f.write(line + "\\n")

@stage(outputs=["data"])
def make_data(n: int = 50):
    log("make_data")
    return list(range(n))

@stage(inputs=["data"], outputs=["model"])
def train(data, lr: float, hidden: int, ctx):
    log(f"train {lr!r} {hidden}")
    time.sleep(float(os.environ.get("TRAIN_SLEEP", "0")))
    loss = 0.0
    for step in range(4):
        loss = (lr - 0.01) ** 2 * 1000 + abs(hidden - 64) / 64 + 1.0 / (step + 1)
        ctx.metric("loss", loss, step=step, show=False)
    return {"lr": lr, "hidden": hidden, "loss": loss}

@stage(inputs=["model"], outputs=["score"])
def evaluate(model, ctx):
    log("evaluate")
    ctx.metric("accuracy", SCALE / (1.0 + model["loss"]))
    return model["loss"]
'''

SEARCH = '''
params: {n: 50}
search:
  space:
    lr: {type: float, low: 0.0001, high: 0.1, log: true}
    hidden: {type: int, low: 16, high: 128}
  metric: accuracy
  direction: maximize
  trials: TRIALS
  seed: SEED
'''


@pytest.fixture
def search_project(make_project):
    def make(trials: int = 20, seed: int = 7, extra: str = ""):
        return make_project({
            "stages/__init__.py": "",
            "stages/s.py": STAGES.replace("SCALE", "1.0"),
            "params/search.yaml": SEARCH.replace("TRIALS", str(trials)).replace("SEED", str(seed)) + extra,
        })
    return make


def _lines(proj, prefix: str) -> list[str]:
    return [line for line in proj.log.read_text().splitlines() if line.startswith(prefix)] if proj.log.exists() else []


def _trials(proj) -> list[dict]:
    (log,) = (proj.root / "cache" / "search").glob("search-*.jsonl")
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_study_runs_its_trials_as_param_sets_sharing_what_they_do_not_touch(search_project):
    proj = search_project(trials=20)
    summary = json.loads(proj.experiment("run", "search", "--json", timeout=240).stdout)
    assert summary["status"] == "succeeded"
    assert len(_lines(proj, "make_data")) == 1  # upstream of the searched params: computed once for 20 trials
    assert len(_lines(proj, "train")) == 20 and len(_lines(proj, "evaluate")) == 20
    study = summary["search"]
    assert len(study["trials"]) == 20 and {t["state"] for t in study["trials"]} == {"complete"}
    best = max(study["trials"], key=lambda t: t["value"])
    assert study["best"]["number"] == best["number"]
    assert all(0.0001 <= t["params"]["lr"] <= 0.1 and 16 <= t["params"]["hidden"] <= 128 for t in study["trials"])
    assert set(study["importances"]) == {"lr", "hidden"}
    # the trials are sets like any other: compare lists them, the report has the search
    compared = json.loads(proj.experiment("compare", "search", "--json").stdout)
    assert len(compared["rows"]) == 20
    report = Path(summary["report"]).read_text()
    assert 'id="search"' in report and "optimization history" in report and best["set"] in report
    # the study is left where Optuna's tools find it
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    (journal,) = (proj.root / "cache" / "search").glob("search-*.optuna")
    storage = JournalStorage(JournalFileBackend(str(journal)))
    (name,) = optuna.get_all_study_names(storage)
    assert name == journal.stem and len(optuna.load_study(study_name=name, storage=storage).trials) == 20


def test_running_the_search_again_continues_it_without_rerunning_finished_trials(search_project):
    proj = search_project(trials=6)
    first = json.loads(proj.experiment("run", "search", "--json").stdout)["search"]
    again = json.loads(proj.experiment("run", "search", "--json").stdout)
    assert len(_lines(proj, "train")) == 6  # nothing ran again
    assert {n["status"] for n in again["nodes"]} == {"cached"}
    assert [t["value"] for t in again["search"]["trials"]] == [t["value"] for t in first["trials"]]
    proj.edit("params/search.yaml", "trials: 6", "trials: 9")
    more = json.loads(proj.experiment("run", "search", "--json").stdout)["search"]
    assert len(more["trials"]) == 9 and len(_lines(proj, "train")) == 9  # three new trials, the six told from the cache


def test_the_same_seed_gives_the_same_trials(search_project, tmp_path):
    proj = search_project(trials=8, seed=11, extra="  parallel: 2\n")
    proj.experiment("run", "search", "-j", "2")
    first = _trials(proj)
    import shutil

    shutil.rmtree(proj.root / "cache")
    proj.experiment("run", "search", "-j", "2")
    assert _trials(proj) == first and len(first) == 8
    proj.edit("params/search.yaml", "seed: 11", "seed: 12")
    proj.experiment("run", "search", "-j", "2")
    other = [json.loads(line) for p in (proj.root / "cache" / "search").glob("search-*.jsonl") for line in
             p.read_text().splitlines()]
    assert [t["params"] for t in other if t not in first][:8] != [t["params"] for t in first]


def test_a_search_killed_mid_run_resumes_the_same_study_without_rerunning_finished_trials(search_project, monkeypatch,
                                                                                          tmp_path):
    reference = search_project(trials=10, seed=5)
    monkeypatch.setenv("TRAIN_SLEEP", "0.3")
    proc = reference.start("run", "search")
    deadline = time.time() + 60
    while time.time() < deadline and len(_lines(reference, "evaluate")) < 4:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(_lines(reference, "evaluate"))
    assert 4 <= finished < 10
    trained_before = len(_lines(reference, "train"))
    reference.experiment("run", "search", timeout=240)
    trained = _lines(reference, "train")
    assert len(trained) - trained_before == 10 - finished  # the finished trials were told from the cache
    assert len(set(trained)) == 10  # (a trial killed while training trains again: the same trial, no new one)
    killed = _trials(reference)
    # an uninterrupted study with the same seed asked the very same trials
    import shutil

    shutil.rmtree(reference.root / "cache")
    reference.log.unlink()
    monkeypatch.setenv("TRAIN_SLEEP", "0")
    reference.experiment("run", "search")
    assert _trials(reference) == killed


def test_editing_the_evaluation_rescores_every_past_trial_without_retraining(search_project):
    proj = search_project(trials=6)
    first = json.loads(proj.experiment("run", "search", "--json").stdout)["search"]
    proj.edit("stages/s.py", '1.0 / (1.0 + model["loss"])', '3.0 / (1.0 + model["loss"])')
    after = json.loads(proj.experiment("run", "search", "--json").stdout)["search"]
    assert len(_lines(proj, "train")) == 6 and len(_lines(proj, "evaluate")) == 12  # only the evaluation reran
    assert [round(t["value"], 9) for t in after["trials"]] == [round(3 * t["value"], 9) for t in first["trials"]]


PRUNED_STAGES = '''
import os, time
from orchestrator import stage

@stage(outputs=["model"])
def train(quality: float, ctx):
    for step in range(6):
        ctx.checkpoint({"step": step}, "state")
        ctx.metric("score", quality * (step + 1), step=step, show=False)
        time.sleep(0.15)
    return quality
'''


def test_a_trial_worse_than_the_median_is_pruned_not_failed(make_project):
    proj = make_project({"stages/__init__.py": "", "stages/s.py": PRUNED_STAGES, "params/search.yaml": '''
search:
  space:
    quality: [1.0, 2.0, 3.0, 0.1]
  metric: score
  direction: maximize
  trials: 6
  sampler: random
  startup_trials: 2
  seed: 1
'''})
    summary = json.loads(proj.experiment("run", "search", "--json").stdout)
    assert summary["status"] == "succeeded"  # a pruned trial is not a failure
    states = {t["number"]: t["state"] for t in summary["search"]["trials"]}
    pruned = [t for t in summary["search"]["trials"] if t["state"] == "pruned"]
    assert pruned and all(t["params"]["quality"] == 0.1 for t in pruned)
    assert all(t["state"] == "complete" for t in summary["search"]["trials"] if t["params"]["quality"] >= 2.0
               and t["number"] >= 2)
    statuses = {n["param_set"]: n["status"] for n in summary["nodes"]}
    assert {statuses[t["set"]] for t in pruned} == {"pruned"}
    # its checkpoint stays in its attempt folder; a later run tells it as pruned without training it again
    keys = {n["key"][:16] for n in summary["nodes"] if n["status"] == "pruned"}
    kept = {p.parent.name for p in (proj.root / "cache").rglob("state.ctx-checkpoint")}
    assert keys and keys <= kept
    again = json.loads(proj.experiment("run", "search", "--json").stdout)
    assert {t["number"]: t["state"] for t in again["search"]["trials"]} == states
    assert not any(n["param_set"] in {t["set"] for t in pruned} for n in again["nodes"])


@pytest.mark.parametrize("block, message", [
    ({"space": {"lr": {"type": "float", "low": 1, "high": 0.1}}, "metric": "a"}, "do not make a range"),
    ({"space": {"lr": [1, 2]}, "metric": "a", "direction": "up"}, "direction"),
    ({"space": {"lr": [1, 2]}}, "needs the metric"),
    ({"space": {"lr": [1, 2]}, "metric": "a", "samplr": "tpe"}, "unknown key"),
    ({"space": {"lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "metric": "a"}, "log needs low > 0"),
    ({"space": {}, "metric": "a"}, "space"),
    ({"space": {"n": [1]}, "metric": "a", "trials": 0}, "trials"),
])
def test_a_malformed_search_block_is_a_params_error_with_the_fix(block, message):
    with pytest.raises(ParamsError, match=message) as caught:
        parse_search(block, "params/search.yaml")
    assert "Fix" in str(caught.value)


def test_search_blocks_accept_the_short_forms():
    spec = parse_search({"space": {"lr": {"float": [0.001, 0.1], "log": True}, "n": {"int": [1, 8]},
                                   "opt": ["adam", "sgd"], "drop": {"low": 0.0, "high": 0.5}},
                         "objective": {"metric": "loss", "direction": "min"}}, "x")
    assert [(d.name, d.kind) for d in spec.space] == [("lr", "float"), ("n", "int"), ("opt", "categorical"),
                                                      ("drop", "float")]
    assert spec.direction == "minimize" and spec.metric == "loss" and spec.sampler == "tpe"
    aliases = parse_search({"space": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
                                      "n": {"type": "integer", "low": 1, "high": 4},
                                      "opt": {"type": "choice", "values": ["a", "b"]}}, "metric": "m"}, "x")
    assert [(d.kind, d.log) for d in aliases.space] == [("float", True), ("int", False), ("categorical", False)]


def test_a_search_runs_alone_and_not_over_searched_overrides(search_project):
    proj = search_project(trials=2)
    assert "search search: 0 of 2 trials" in proj.experiment("plan", "search").stdout  # before any trial
    proj.experiment("run", "search")
    listed = proj.experiment("params", "search").stdout
    assert "search search: 2 of 2 trials" in listed and listed.count("search-") >= 2
    proj.write({"params/other.yaml": "params: {n: 3, lr: 0.1, hidden: 3}\n"})
    assert "run it alone" in proj.experiment("run", "search", "other", check=2).stderr
    assert "is searched" in proj.experiment("run", "search", "--set", "lr=0.1", check=2).stderr


TORCHRUN_TRIAL = '''
from orchestrator import stage

@stage(outputs=["model"])
def train(quality: float, ctx):
    return ctx.torchrun("external/fit.py", args={"quality": quality}, outputs={"model": "model.json"},
                        nproc_per_node=1)
'''

FIT = '''
import time
from orchestrator.external import atomic_path, checkpoint_dir, log_metric, parse_args, write_json

args = parse_args(quality=0.0)
for epoch in range(12):
    with atomic_path(checkpoint_dir(args) / f"epoch{epoch}.ckpt") as staged:
        staged.write_text(str(epoch))
    log_metric("score", args.quality * (epoch + 1), step=epoch)
    time.sleep(0.4)
write_json(args.output_dir / "model.json", {"quality": args.quality})
'''


def test_pruning_stops_a_torchrun_trial_and_keeps_its_checkpoints(make_project):
    proj = make_project({"stages/__init__.py": "", "stages/s.py": TORCHRUN_TRIAL, "external/fit.py": FIT,
                         "params/search.yaml": '''
search:
  space:
    quality: [0.5, 1.0]
  metric: score
  direction: maximize
  trials: 2
  startup_trials: 1
  sampler: qmc
  seed: 0
'''})
    started = time.monotonic()
    summary = json.loads(proj.experiment("run", "search", "--json", timeout=240).stdout)
    seconds = time.monotonic() - started
    trials = summary["search"]["trials"]
    assert [t["state"] for t in trials] == ["complete", "pruned"], trials
    assert summary["status"] == "succeeded"
    pruned = next(n for n in summary["nodes"] if n["status"] == "pruned")
    (attempt,) = [p for p in (proj.root / "cache" / "attempts" / "train").iterdir() if p.name == pruned["key"][:16]]
    kept = sorted(p.name for p in (attempt / "checkpoints").glob("epoch*.ckpt"))
    assert kept and len(kept) < 12  # stopped early, and what it checkpointed is still there
    assert seconds < 12 * 0.4 * 2 + 30  # the pruned trial did not run its 12 epochs
