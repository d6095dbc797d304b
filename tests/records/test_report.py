"""The HTML report: self-contained, escaped, with the DAG, timings, reportables and metric plots."""

from __future__ import annotations

import re
from pathlib import Path

from sample_projects import REPORTING

from orchestrator.records.charts import metric_chart, nice_ticks
from orchestrator.records.dagview import dag_svg
from orchestrator.records.markup import markdown, png_data_uri, sanitize_table


def test_markdown_is_escaped_before_it_is_formatted():
    html = markdown("# Title <img src=x onerror=alert(1)>\n\n**bold** and `<code>`\n\n- one\n- [link](http://x)")
    assert "<h3>Title &lt;img src=x onerror=alert(1)&gt;</h3>" in html
    assert "<strong>bold</strong>" in html and "<code>&lt;code&gt;</code>" in html
    assert "<li>one</li>" in html and "<a" not in html and "<img" not in html


def test_table_sanitizer_keeps_only_table_structure():
    dirty = ('<table class="x" onclick="evil()"><tr><th colspan="2" style="x">h</th></tr>'
             '<tr><td><script>alert(1)</script><a href="http://x">a &amp; b</a></td></tr></table>')
    clean = sanitize_table(dirty)
    assert clean == ('<table><tr><th colspan="2">h</th></tr><tr><td>alert(1)a &amp; b</td></tr></table>')


def test_png_data_uri_accepts_only_png():
    assert png_data_uri("iVBORw0KGgoAAAANSUhEUg==").startswith("data:image/png;base64,")
    assert png_data_uri("PHN2Zz4=") == ""  # an svg, base64
    assert png_data_uri("not base64!") == ""


def test_dag_svg_layers_nodes_and_colours_statuses():
    dag = {"nodes": [["a@x", "a", "x"], ["b@x", "b", "x"], ["c@*", "c", "*"]],
           "edges": [["a@x", "b@x", "out"], ["b@x", "c@*", "more"]]}
    svg = dag_svg(dag, {"a@x": "cached", "b@x": "failed", "c@*": "skipped"}, engine="python")
    assert svg.startswith("<svg") and svg.count('class="edge"') == 2
    assert 'data-node="b@x" data-status="failed"' in svg and "#ffcdd2" in svg
    xs = [float(x) for x in re.findall(r'<rect x="([\d.]+)"', svg)]
    assert xs[0] < xs[1] < xs[2]  # one layer per step, left to right
    big = {"nodes": [[f"s{i}@{k}", f"s{i}", str(k)] for i in range(20) for k in range(10)], "edges": []}
    collapsed = dag_svg(big, {}, engine="python")
    assert collapsed.count("<g class=\"node") == 20  # one box per stage above the per-node limit


def test_charts_draw_a_line_per_series_or_bars():
    ticks = nice_ticks(0.03, 0.97)
    assert ticks[0] <= 0.03 and ticks[-1] >= 0.97 and len(ticks) <= 8
    lines = metric_chart("loss", {"a": [(0, 1.0), (1, 0.5)], "b": [(0, 0.9), (1, 0.2)]})
    assert lines.count('class="series"') == 2 and ">loss<" in lines
    bars = metric_chart("acc", {"a": [(0, 0.9)], "b": [(0, 0.8)]})
    assert bars.count('class="bar"') == 2
    assert metric_chart("empty", {"a": [(0, float("nan"))]}) == ""


def test_report_of_a_real_run_is_self_contained_and_escaped(make_project):
    proj = make_project(REPORTING)
    proc = proj.experiment("run", "sweep", "--desc", "lr sweep <script>x</script>")
    path = Path(proc.stdout.split("report:", 1)[1].split()[0])
    assert path.name == "report.html" and path.parent.parent.name == "runs"
    html = path.read_text()
    for bad in ("<script>x", "<script>alert", "src=\"http", "href=\"http", "url(http", "@import"):
        assert bad not in html
    assert not re.findall(r"https?://(?!www\.w3\.org/2000/svg)", html)  # only the SVG namespace
    assert "<h1>lr sweep &lt;script&gt;x&lt;/script&gt;</h1>" in html
    assert 'class="varying"><th>lr</th>' in html  # the param that differs across sets
    assert html.count('class="node status-ran"') == 4 and 'class="node status-cached"' in html
    assert 'class="series"' in html and "sweep[lr=0.1]" in html  # loss: one line per set
    assert "<td>sweep[lr=0.3]</td>" in html and "data:image/png;base64," in html  # table and figure
    assert "<h3>Training</h3>" in html and "scores.accuracy" in html

    again = proj.experiment("run", "sweep")  # all cached: the reportables are shown again
    warm = Path(again.stdout.split("report:", 1)[1].split()[0]).read_text()
    assert "(from the cache)" in warm and "data:image/png;base64," in warm and 'class="series"' in warm
    out = proj.root / "elsewhere.html"
    assert proj.experiment("report", "last~1", "-o", str(out)).stdout.strip() == str(out)
    assert "lr sweep" in out.read_text()
