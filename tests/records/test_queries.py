"""The questions the run records answer: explain, lineage, diff, log, show, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

from sample_projects import FAILING


def as_json(project, *args: str):
    return json.loads(project.experiment(*args, "--json").stdout)


def test_explain_names_a_changed_helper_and_a_changed_param(project):
    project.run_json("base")
    project.edit("stages/helpers.py", "return 2 * x", "return x + x")
    project.run_json("base")
    [why] = as_json(project, "explain", "double_all")
    assert why["status"] == "ran" and "code changed: double" in why["changes"]
    assert "code changed: double" in project.experiment("explain", "double_all").stdout
    [cached] = as_json(project, "explain", "total")  # early cutoff: same inputs, so cached
    assert cached["status"] == "cached" and cached["summary"].startswith("cached")

    project.run_json("base", "--set", "scale=3")
    [why] = as_json(project, "explain", "double_all", "--set", "base")
    assert why["changes"] == ["param scale 1 -> 3"]
    [older] = as_json(project, "explain", "double_all", "--run", "last~1")
    assert "code changed: double" in older["changes"]
    proc = project.experiment("explain", "doubel_all", check=2)
    assert "Did you mean 'double_all'?" in proc.stderr


def test_explain_compares_with_the_execution_that_computed_the_previous_result(project):
    first = project.run_json("base", "--set", "scale=2")["run_id"]  # computes scale=2
    project.run_json("base")  # computes scale=1
    project.run_json("base", "--set", "scale=2")  # reuses the first run's result: computes nothing
    project.run_json("base", "--set", "scale=5")
    [why] = as_json(project, "explain", "double_all")
    runs = [r["id"] for r in as_json(project, "runs")]  # newest first
    # its last execution that stored a result is the second run (scale=1), not the third, which only reused one
    assert why["changes"] == ["param scale 1 -> 5"] and why["previous_run"] == runs[2]
    [reused] = as_json(project, "explain", "double_all", "--run", "last~1")
    assert reused["status"] == "cached" and reused["stored_by"] == first


def test_lineage_of_an_aggregate_walks_back_to_the_first_stage(project):
    project.run_json("grid")
    [tree] = as_json(project, "lineage", "summary")
    assert tree["stage"] == "summary" and tree["run_id"]

    def stages(node, depth=0):
        yield node["stage"], node["params"], depth
        for sub in node["inputs"].values():
            yield from stages(sub, depth + 1)

    found = list(stages(tree))
    assert {s for s, _, _ in found} == {"summary", "total", "double_all", "shift", "make_numbers"}
    assert ("make_numbers", {"n": 5}, 3) in found
    assert {"scale": 2} in [p for s, p, _ in found if s == "double_all"]
    leaves = [s for s, _, d in found if d == 3]
    assert set(leaves) == {"make_numbers"}
    by_hash = as_json(project, "lineage", tree["hash"][:10])
    assert by_hash == [tree]
    text = project.experiment("lineage", "summary").stdout
    assert "make_numbers" in text and "n=5" in text
    proc = project.experiment("lineage", "sumary", check=2)
    assert "Did you mean 'summary'?" in proc.stderr


def test_diff_shows_a_changed_param_and_artifact_hash(project):
    project.run_json("base")
    project.run_json("base", "--set", "scale=3")
    data = as_json(project, "diff", "last~1", "last")
    assert {"set": "base", "name": "scale", "a": 1, "b": 3} in data["params"]
    changed = {row["name"] for row in data["artifacts"]}
    assert "double_all [base] doubled" in changed and "make_numbers [base] numbers" not in changed
    assert data["code"] == []
    text = project.experiment("diff", "last~1", "last").stdout
    assert "scale" in text and "double_all [base] doubled" in text


def test_log_shows_what_a_stage_printed_also_when_cached(make_project):
    proj = make_project(FAILING)
    proj.experiment("run", "p", "--set", "limit=5")
    first = as_json(proj, "runs")[0]["id"]
    assert proj.experiment("log", "last", "first").stdout == "first is fine\n"
    proj.experiment("run", "p", "--set", "limit=5")
    proc = proj.experiment("log", "last", "first")
    assert proc.stdout == "first is fine\n" and f"in run {first}, which computed it" in proc.stderr


def test_failure_summary_names_its_log_and_show_lists_it(make_project):
    proj = make_project(FAILING)
    proc = proj.experiment("run", "p", check=1)
    assert "its log:" in proc.stdout and "report:" in proc.stdout
    log_line = next(line for line in proc.stdout.splitlines() if "its log:" in line)
    log = Path(log_line.split("its log:", 1)[1].strip())
    assert "about to fail with limit 0" in log.read_text()
    run = as_json(proj, "show", "last")
    [failed] = [e for e in run["executions"] if e["status"] == "failed"]
    assert failed["error"]["type"] == "ValueError" and "over the limit" in failed["error"]["message"]
    assert "raise ValueError" in failed["error"]["traceback"] and failed["log_path"] == str(log)
    text = proj.experiment("show", "last").stdout
    assert "FAILED second" in text and "ValueError" in text
    assert [r["status"] for r in as_json(proj, "runs", "--status", "failed")] == ["failed"]


def test_run_ids_by_prefix_and_unknown_ones(project):
    run_id = project.run_json("base")["run_id"]
    assert as_json(project, "show", run_id[:17])["id"] == run_id
    proc = project.experiment("show", "nope", check=2)
    assert "no run 'nope'" in proc.stderr and "experiment runs" in proc.stderr
    proc = project.experiment("explain", "shift", "--set", "bsae", check=2)
    assert "Did you mean 'base'?" in proc.stderr


def test_diff_across_param_files_pairs_sets_by_their_params(project):
    base = project.run_json("base")["run_id"]
    grid = project.run_json("grid")["run_id"]
    data = as_json(project, "diff", base, grid)
    assert data["sets"]["paired"] == [["base", "grid[scale=1]"]]  # the same params under another name
    assert data["sets"]["only_b"] == ["grid[scale=2]"] and data["sets"]["only_a"] == []
    assert data["params"] == []  # same params
    # same results, nothing "(absent)": only the aggregate over the sets (one set against two) changed
    assert [row["name"] for row in data["artifacts"]] == ["summary [*] summary"]
    text = project.experiment("diff", base, grid).stdout
    assert "base (A) compared with grid[scale=1] (B)" in text and "(absent)" not in text
