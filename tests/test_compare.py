"""`experiment compare`: param sets side by side, their latest metrics, and which rows are stale."""

from __future__ import annotations

import csv
import io
import json

STAGES = '''
import os

from orchestrator import stage


def mark(name):
    with open(os.environ["RUNS_LOG"], "a") as log:
        log.write(name + "\\n")


@stage(outputs=["model"])
def fit(lr: float, depth: int = 2, epochs: int = 3, ctx=None):
    mark("fit")
    loss = 1.0
    for epoch in range(epochs):
        loss = loss * (1 - lr) / depth
        ctx.metric("train_loss", loss, step=epoch, show=False)
    return {"lr": lr, "depth": depth, "loss": loss}


@stage(inputs=["model"], outputs=["scores"], metrics=["scores"])
def evaluate(model):
    mark("evaluate")
    return {"accuracy": round(1 - model["loss"], 6), "label": "not a number"}
'''

FILES = {
    "stages/__init__.py": "",
    "stages/s.py": STAGES,
    "params/base.yaml": "params:\n  lr: 0.1\n  depth: 2\n",
    "params/sweep.yaml": "extends: base\ngrid:\n  lr: [0.1, 0.5]\n  depth: [2, 4]\n",
}


def _compare(proj, *args: str) -> dict:
    return json.loads(proj.experiment("compare", "sweep", "--json", *args).stdout)


def test_a_sweep_compares_its_varying_params_and_metrics_with_the_best_marked(make_project):
    proj = make_project(FILES)
    proj.run_json("sweep")
    table = _compare(proj)
    assert table["params"] == ["depth", "lr"]  # the params that vary; epochs and the others do not
    assert {"scores.accuracy", "train_loss", "train_loss.min", "train_loss.max"} <= set(table["metrics"])
    assert "scores.label" not in table["metrics"]  # only numbers
    rows = {r["set"]: r for r in table["rows"]}
    assert len(rows) == 4 and all(r["state"] == "fresh" for r in rows.values())
    best = max(rows.values(), key=lambda r: r["metrics"]["scores.accuracy"])
    assert table["best"]["scores.accuracy"] == best["set"]
    lowest = min(rows.values(), key=lambda r: r["metrics"]["train_loss"])
    assert table["best"]["train_loss"] == lowest["set"]  # a loss is best when lowest
    row = rows["sweep[lr=0.5,depth=4]"]
    assert row["params"] == {"depth": 4, "lr": 0.5}
    assert row["metrics"]["train_loss.max"] > row["metrics"]["train_loss"] == row["metrics"]["train_loss.min"]

    plain = proj.experiment("compare", "sweep").stdout  # a pipe: one unwrapped line per row
    lines = plain.splitlines()
    assert lines[0].split()[:3] == ["set", "depth", "lr"] and len(lines) == 2 + 4
    assert sum("*" in line for line in lines[2:]) >= 1


def test_rows_are_marked_stale_with_the_stage_and_reason_and_fill_runs_exactly_those(make_project):
    proj = make_project(FILES)
    proj.run_json("sweep")
    proj.ran()
    proj.edit("stages/s.py", 'return {"accuracy": round(1 - model["loss"], 6)', 'return {"accuracy": round(1 - model["loss"], 5)')
    table = _compare(proj)
    assert {r["state"] for r in table["rows"]} == {"stale"}
    assert len(_compare(proj, "--only-changed")["rows"]) == 4
    assert all(r["why"].startswith("evaluate: code changed") for r in table["rows"]), table["rows"]
    assert all("scores.accuracy" in r["metrics"] and r["run"] for r in table["rows"])  # the last result's numbers

    proj.write({"params/sweep.yaml": "extends: base\ngrid:\n  lr: [0.1, 0.5, 0.9]\n  depth: [2, 4]\n"})
    table = _compare(proj)
    missing = [r for r in table["rows"] if r["state"] == "missing"]
    assert sorted(r["set"] for r in missing) == ["sweep[lr=0.9,depth=2]", "sweep[lr=0.9,depth=4]"]
    assert missing[0]["metrics"] == {}

    filled = _compare(proj, "--fill")
    assert {r["state"] for r in filled["rows"]} == {"fresh"}
    ran = proj.ran()
    assert ran.count("fit") == 2 and ran.count("evaluate") == 6  # the new sets' fits; every stale evaluate


def test_where_sort_state_and_csv(make_project):
    proj = make_project(FILES)
    proj.run_json("sweep")
    table = _compare(proj, "--where", "lr > 0.2 and depth == 2")
    assert [r["set"] for r in table["rows"]] == ["sweep[lr=0.5,depth=2]"]
    ordered = _compare(proj, "--sort", "scores.accuracy")["rows"]
    accuracies = [r["metrics"]["scores.accuracy"] for r in ordered]
    assert accuracies == sorted(accuracies, reverse=True)
    assert _compare(proj, "--state", "stale")["rows"] == []
    assert _compare(proj, "--only-changed")["rows"] == []  # every row fresh
    rows = list(csv.DictReader(io.StringIO(proj.experiment("compare", "sweep", "--csv").stdout)))
    assert len(rows) == 4 and {"set", "state", "depth", "lr", "scores.accuracy"} <= set(rows[0])
    bad = proj.experiment("compare", "sweep", "--where", "__import__('os')", check=2)
    assert "--where" in bad.stderr and "not allowed" in bad.stderr
    unknown = proj.experiment("compare", "sweep", "--sort", "accuracy", check=2)
    assert "no such column" in unknown.stderr and "scores.accuracy" in unknown.stderr


def test_metrics_must_name_outputs(make_project):
    proj = make_project({**FILES, "stages/s.py": STAGES.replace('metrics=["scores"]', 'metrics=["score"]')})
    proc = proj.experiment("compare", "sweep", check=2)
    assert "metrics=['score'] must list some of its outputs ['scores']" in proc.stderr


def test_a_sweep_run_ends_with_its_sets_side_by_side(make_project):
    proj = make_project(FILES)
    out = proj.experiment("run", "sweep").stdout
    header = next(line for line in out.splitlines() if line.startswith("set "))
    assert header.split()[:3] == ["set", "depth", "lr"] and "scores.accuracy" in header
    single = proj.experiment("run", "base").stdout  # one set: nothing to compare
    assert not any(line.startswith("set ") for line in single.splitlines())


def test_the_report_of_a_sweep_has_the_sets_side_by_side(make_project):
    from pathlib import Path

    proj = make_project(FILES)
    summary = proj.run_json("sweep")
    html = Path(summary["report"]).read_text()
    table = html.split('id="compare-table"')[1].split("</table>")[0]
    assert "scores.accuracy" in table and "train_loss" in table
    assert table.count("<tr>") == 1 + 4 and "<b>" in table  # a header, a row per set, the best in bold
    assert "sweep[lr=0.5,depth=4]" in table


def test_recorded_runs_compare_by_run_and_set_with_runs_or_tag(make_project):
    proj = make_project(FILES)
    first = proj.run_json("sweep", "--tag", "paper")["run_id"]
    second = proj.run_json("base", "--set", "lr=0.9", "--tag", "paper")["run_id"]
    proj.run_json("base")  # untagged
    table = json.loads(proj.experiment("compare", "--tag", "paper", "--json").stdout)
    sets = {r["set"] for r in table["rows"]}
    assert sets == {f"{first} sweep[lr={lr},depth={d}]" for lr in (0.1, 0.5) for d in (2, 4)} | {f"{second} base"}
    assert {r["state"] for r in table["rows"]} == {"recorded"} and table["params"] == ["depth", "lr"]
    assert all("scores.accuracy" in r["metrics"] for r in table["rows"])
    one = json.loads(proj.experiment("compare", "--runs", second, "--json").stdout)
    assert [r["set"] for r in one["rows"]] == [f"{second} base"] and one["rows"][0]["run"] == second
    both = proj.experiment("compare", "sweep", "--runs", first, check=2)
    assert "not both" in both.stderr
    assert "no recorded run has the tag" in proj.experiment("compare", "--tag", "nope", check=None).stderr
