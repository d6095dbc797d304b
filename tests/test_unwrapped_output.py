"""Off a terminal (a file, a pipe, SLURM, CI) the record commands print whole lines: no wrapping, no cut ids."""

from __future__ import annotations

import json
import re


def test_runs_and_show_keep_ids_and_long_values_whole_in_a_pipe(project):
    title = "A very long description of what this run tried " * 6
    summary = project.run_json("grid", "--desc", title)
    run_id = summary["run_id"]
    listing = project.experiment("runs").stdout
    row = next(line for line in listing.splitlines() if run_id in line)  # the whole id, on one line
    assert "grid" in row  # the param file of the run
    assert "…" in row and title not in listing  # the title shortened, not wrapped over many lines
    shown = project.experiment("show", run_id).stdout
    keys = [e["key"] for e in json.loads(project.experiment("show", run_id, "--json").stdout)["executions"]]
    for key in keys:
        if key:
            assert re.search(rf"\b{key[:10]}\b", shown)  # a hash is never split over two lines
    assert max(len(line) for line in shown.splitlines()) > 100  # wider than a terminal would allow: not wrapped
