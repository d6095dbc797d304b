"""Tags and notes on runs: run --tag, experiment tag/note, runs --tag, shown by show and runs."""

from __future__ import annotations

import json


def test_runs_are_tagged_noted_and_found_by_tag(project):
    first = project.run_json("base", "--tag", "baseline", "--tag", "paper/fig3")["run_id"]
    second = project.run_json("grid")["run_id"]
    runs = json.loads(project.experiment("runs", "--json").stdout)
    assert {r["id"]: r["tags"] for r in runs} == {first: ["baseline", "paper/fig3"], second: []}

    assert "best" in project.experiment("tag", second, "best").stdout
    assert [r["id"] for r in json.loads(project.experiment("runs", "--tag", "best", "--json").stdout)] == [second]
    project.experiment("tag", first, "paper/fig3", "--remove")
    assert [r["id"] for r in json.loads(project.experiment("runs", "--tag", "paper/fig3", "--json").stdout)] == []

    project.experiment("note", "last", "lr 0.1 diverges after epoch 3")
    shown = project.experiment("show", "last").stdout
    assert "tags: best" in shown and "lr 0.1 diverges after epoch 3" in shown
    assert json.loads(project.experiment("show", second, "--json").stdout)["notes"][0]["text"].startswith("lr 0.1")
    listing = project.experiment("runs").stdout
    assert any(second in line and "[best]" in line for line in listing.splitlines())


def test_a_malformed_tag_is_refused_before_anything_runs(project):
    proc = project.experiment("run", "base", "--tag", "two words", check=2)
    assert "tag 'two words'" in proc.stderr and "Fix:" in proc.stderr
    assert project.ran() == []
    assert project.experiment("note", "last", "x", check=None).returncode != 0  # no run recorded yet
