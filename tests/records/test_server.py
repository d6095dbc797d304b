"""The UI server without a browser: loopback only, sorting by a metric, errors, JSON."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from sample_projects import REPORTING

from orchestrator.records.server import make_server


@pytest.fixture
def served(make_project) -> Iterator[tuple[str, list[str]]]:
    proj = make_project(REPORTING)
    proj.experiment("run", "sweep", "--target", "model")
    proj.experiment("run", "slow", "--target", "model")
    ids = [run["id"] for run in reversed(json.loads(proj.experiment("runs", "--json").stdout))]
    server = make_server(proj.root / "cache" / "runs.db", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", ids
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_server_listens_on_loopback_only(tmp_path):
    server = make_server(tmp_path / "runs.db", port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()


def test_index_sorts_by_a_metric_and_pages_answer_errors(served):
    base, (first, second) = served
    status, page = fetch(f"{base}/?sort=metric&metric=loss&order=desc")
    assert status == 200 and page.index(second) < page.index(first)  # small learning rates end with the higher loss
    status, page = fetch(f"{base}/?sort=metric&metric=loss&order=asc")
    assert page.index(first) < page.index(second)
    assert 'option value="scores.accuracy"' in page
    runs = json.loads(fetch(f"{base}/api/runs")[1])
    assert [r["id"] for r in runs] == [second, first] and runs[0]["metrics"]["loss"] > runs[1]["metrics"]["loss"]
    status, page = fetch(f"{base}/diff?run={first}&run={second}")
    assert status == 200 and "lr" in page and "loss" in page
    assert fetch(f"{base}/diff?run={first}")[0] == 400
    status, page = fetch(f"{base}/runs/nope")
    assert status == 404 and "no run" in page
    assert fetch(f"{base}/../../etc/passwd")[0] == 404


def test_requests_addressed_to_another_host_name_are_refused(served):
    base, _ = served
    rebound = urllib.request.Request(f"{base}/api/runs", headers={"Host": "attacker.example:8765"})
    try:
        urllib.request.urlopen(rebound, timeout=10)
        raise AssertionError("a request for another host name was answered")
    except urllib.error.HTTPError as exc:
        with exc:
            assert exc.code == 403 and "only requests" in exc.read().decode()
    status, page = fetch(base.replace("127.0.0.1", "localhost") + "/api/runs")
    assert status == 200 and json.loads(page)


def test_the_sets_of_a_run_compare_sort_filter_and_plot(served):
    base, (first, _) = served
    status, page = fetch(f"{base}/")
    assert f'href="/compare?run={first}"' in page
    status, page = fetch(f"{base}/compare?run={first}")
    table = page.split('id="compare-table"')[1].split("</table>")[0]
    assert status == 200 and table.count('class="set"') == 2 and "loss" in table and "lr" in table
    assert 'class="num best"' in table
    assert "<circle" in page.split('id="scatter"')[1]  # loss against lr, a point per set
    ordered = fetch(f"{base}/compare?run={first}&sort=loss")[1].split('id="compare-table"')[1]
    assert ordered.index("sweep[lr=0.3]") < ordered.index("sweep[lr=0.1]")  # lowest loss first
    kept = fetch(f"{base}/compare?run={first}&where=lr+%3E+0.2")[1].split('id="compare-table"')[1].split("</table>")[0]
    assert kept.count('class="set"') == 1 and "sweep[lr=0.3]" in kept
    chosen = fetch(f"{base}/compare?run={first}&col=loss")[1].split('id="compare-table"')[1].split("</table>")[0]
    assert "loss" in chosen and "scores.accuracy" not in chosen
    status, page = fetch(f"{base}/compare?run={first}&where=__import__%28%27os%27%29")
    assert status == 200 and 'id="where-error"' in page and "not allowed" in page
