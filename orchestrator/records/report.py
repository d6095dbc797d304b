"""The HTML report of a run: one self-contained file (inline CSS and SVG, PNGs as data URIs).

It needs nothing from the network: a Content-Security-Policy forbids any request, so a
report opened from disk, e-mailed or archived shows the same thing forever. Every piece of
text that came from a run (params, names, messages, reportables) is escaped.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.context import live_metrics_path
from .charts import metric_chart
from .compare import recorded
from .dagview import STATUS_COLOURS, dag_svg
from .values import ExecutionRecord, RunRecord

if TYPE_CHECKING:
    from .history import History
from ..units import byte_size, local_time
from .markup import esc, markdown, png_data_uri, sanitize_table
from .searchview import search_section

__all__ = ["badge", "flatten", "page", "render_page", "render_report", "report_path", "write_html",
           "write_report"]

ROW_LIMIT = 300  # rows per table in a report; cached stages beyond it are only counted
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'self'"  # and no script at all
CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#263238;background:#fafafa}
header,main{max-width:1200px;margin:0 auto;padding:0 20px}header{padding-top:18px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #cfd8dc}
.meta{color:#546e7a;margin:2px 0}code,pre{font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}
pre{background:#eceff1;padding:8px;overflow:auto;max-height:420px;white-space:pre-wrap}
table{border-collapse:collapse;margin:6px 0;background:#fff}th,td{border:1px solid #cfd8dc;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#eceff1}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.varying td,tr.varying th{background:#fff8e1}tr.varying th::after{content:" *";color:#ef6c00}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;border:1px solid}
.scroll{overflow:auto;max-width:100%}.muted{color:#78909c}.bar{height:9px;background:#78909c;min-width:1px}
.card{background:#fff;border:1px solid #cfd8dc;border-radius:6px;padding:10px 14px;margin:10px 0}
.charts{display:flex;flex-wrap:wrap;gap:12px}nav a{margin-right:12px}a{color:#1565c0}
.legend span{margin-right:10px}img{max-width:100%}
"""


def report_path(cache_dir: Path, run_id: str) -> Path:
    """Where the report of ``run_id`` is written: ``<cache>/runs/<run>/report.html``."""
    return Path(cache_dir) / "runs" / run_id / "report.html"


def badge(status: str) -> str:
    """A coloured status label."""
    fill, stroke = STATUS_COLOURS.get(status, STATUS_COLOURS["pending"])
    return f'<span class="badge status-{esc(status)}" style="background:{fill};border-color:{stroke}">{esc(status)}</span>'


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _number(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def page(title: str, body: str) -> str:
    """A complete, self-contained HTML page (no script: the policy forbids any)."""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{esc(title)}</title><style>{CSS}</style></head>'
            f"<body>{body}</body></html>")


def params_table(sets: Mapping[str, Mapping[str, Any]]) -> str:
    """Params by set, rows whose value varies across sets highlighted."""
    flat = {name: flatten(values) for name, values in sets.items()}
    keys = sorted({k for values in flat.values() for k in values})
    if not keys:
        return '<p class="muted">No params.</p>'
    head = "".join(f"<th>{esc(name)}</th>" for name in flat)
    rows = []
    for key in keys:
        cells = [flat[name].get(key, "—") for name in flat]
        varying = len(flat) > 1 and len({repr(c) for c in cells}) > 1
        rows.append(f'<tr class="{"varying" if varying else ""}"><th>{esc(key)}</th>'
                    + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    note = '<p class="muted">* varies across param sets</p>' if len(flat) > 1 else ""
    return f'<div class="scroll"><table id="params-table"><tr><th>param</th>{head}</tr>{"".join(rows)}</table></div>{note}'


def listed(executions: list[ExecutionRecord], limit: int = ROW_LIMIT) -> tuple[list[ExecutionRecord], int]:
    """What a big run's tables show: every execution that did not come from the cache, then cached
    ones up to ``limit`` rows; also how many were left out."""
    if len(executions) <= limit:
        return executions, 0
    keep = {e.node for e in executions if e.status != "cached"}
    room = max(0, limit - len(keep))
    for e in executions:
        if room <= 0:
            break
        if e.node not in keep:
            keep.add(e.node)
            room -= 1
    chosen = [e for e in executions if e.node in keep]
    return chosen, len(executions) - len(chosen)


def _omitted(count: int, run_id: str) -> str:
    if not count:
        return ""
    return (f'<p class="muted">{count} more cached stages are not listed here; '
            f"<code>experiment show {esc(run_id)}</code> lists every one.</p>")


def _timings(executions: list[ExecutionRecord]) -> str:
    """The stages with a timeline: each bar starts when the stage started and lasts as long as it ran,
    so stages that ran at once (``-j``) overlap; the GPUs each held, when any did."""
    timed = [e for e in executions if e.started is not None and e.seconds > 0]
    start = min((e.started for e in timed if e.started is not None), default=0.0)
    span = max(((e.started or 0.0) + e.seconds - start for e in timed), default=0.0) or 1.0
    gpus = any(e.extras.get("gpus") for e in executions)
    on_timeline = {id(e) for e in timed}
    rows = []
    for e in executions:
        bar = ""
        if id(e) in on_timeline:
            left, width = 160 * ((e.started or start) - start) / span, max(1.0, 160 * e.seconds / span)
            bar = (f'<div class="bar" style="margin-left:{left:.0f}px;width:{width:.0f}px" '
                   f'title="from +{(e.started or start) - start:.1f}s for {e.seconds:.1f}s"></div>')
        held = f"<td>{esc(str(e.extras.get('gpus') or '-'))}</td>" if gpus else ""
        rows.append(f"<tr><td>{esc(e.stage)}</td><td>{esc(e.param_set)}</td><td>{badge(e.status)}</td>"
                    f'<td class="num">{e.seconds:.2f}</td><td>{bar}</td>{held}'
                    f'<td class="num">{byte_size(e.peak_rss) if e.peak_rss else "-"}</td>'
                    f"<td><code>{esc((e.key or '')[:10])}</code></td><td>{esc('; '.join(e.reasons))}</td></tr>")
    return ('<div class="scroll"><table id="timings-table"><tr><th>stage</th><th>param set</th><th>status</th>'
            f"<th>seconds</th><th>timeline</th>{'<th>GPUs</th>' if gpus else ''}<th>peak memory</th><th>key</th>"
            "<th>why</th></tr>" + "".join(rows) + "</table></div>")


def _failures(executions: list[ExecutionRecord]) -> str:
    parts = []
    for e in executions:
        if e.status != "failed" or not e.error:
            continue
        parts.append(f'<div class="card failure"><b>{esc(e.stage)} [{esc(e.param_set)}]</b>: '
                     f"{esc(e.error.get('type', ''))} — {esc(e.error.get('message', ''))}"
                     f"<pre>{esc(e.error.get('traceback', ''))}</pre>"
                     f'<p class="meta">log: <code>{esc(e.log_path)}</code></p></div>')
    return "".join(parts)


def _comparison(record: RunRecord, executions: list[ExecutionRecord]) -> str:
    """The sets side by side (experiment compare): varying params, then final metrics, the best in bold."""
    table = recorded(record.param_sets, executions)
    if len(table.rows) < 2 or not table.metrics:
        return ""
    best = table.best()
    head = "".join(f"<th>{esc(c)}</th>" for c in ("set", *table.params, *table.metrics))
    rows = "".join(
        f"<tr><th>{esc(r.param_set)}</th>" + "".join(f"<td>{esc(r.params.get(p, '—'))}</td>" for p in table.params)
        + "".join(f'<td class="num">{"<b>" if best.get(m) == r.param_set else ""}{esc(_number(r.metrics.get(m, "—")))}'
                  f'{"</b>" if best.get(m) == r.param_set else ""}</td>' for m in table.metrics) + "</tr>"
        for r in table.rows)
    return f'<div class="scroll"><table id="compare-table"><tr>{head}</tr>{rows}</table></div>' \
           '<p class="muted">the best of each column in bold; experiment compare says which are still fresh</p>'


def _series_label(e: ExecutionRecord, stages: set[str]) -> str:
    return e.param_set if len(stages) == 1 else f"{e.stage} [{e.param_set}]"


def _live(e: ExecutionRecord) -> ExecutionRecord:
    """A running execution with the metrics its stage has reported so far (appended beside its log)."""
    if e.status != "running" or not e.log_path or (e.extras or {}).get("metrics"):
        return e
    try:
        lines = live_metrics_path(e.log_path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return e
    points = []
    for line in lines:
        with contextlib.suppress(ValueError):
            points.append(json.loads(line))
    return replace(e, extras={**(e.extras or {}), "metrics": points}) if points else e


def _metrics(executions: list[ExecutionRecord]) -> str:
    found: dict[str, dict[str, list[tuple[float, float]]]] = {}
    stages_of: dict[str, set[str]] = {}
    executions = [_live(e) for e in executions]
    for e in executions:
        for entry in e.extras.get("metrics", ()):
            stages_of.setdefault(str(entry.get("name")), set()).add(e.stage)
    for e in executions:
        for index, entry in enumerate(e.extras.get("metrics", ())):
            name = str(entry.get("name"))
            step = entry.get("step")
            point = (float(step if step is not None else index), float(entry.get("value")))
            found.setdefault(name, {}).setdefault(_series_label(e, stages_of[name]), []).append(point)
    charts = [metric_chart(name, series) for name, series in sorted(found.items())]
    tables: dict[str, dict[str, Any]] = {}
    for e in executions:
        for report in e.extras.get("reports", ()):
            if report.get("kind") == "metrics":
                column = f"{e.stage} [{e.param_set}]"
                for key, value in dict(report.get("values") or {}).items():
                    tables.setdefault(f"{report.get('name')}.{key}", {})[column] = _number(value)
    html = f'<div class="charts">{"".join(c for c in charts if c)}</div>' if charts else ""
    if tables:
        columns = list(dict.fromkeys(c for values in tables.values() for c in values))
        rows = "".join(f"<tr><th>{esc(name)}</th>" + "".join(
            f'<td class="num">{esc(values.get(c, "—"))}</td>' for c in columns) + "</tr>"
            for name, values in sorted(tables.items()))
        html += ('<div class="scroll"><table><tr><th>metric</th>' + "".join(f"<th>{esc(c)}</th>" for c in columns)
                 + f"</tr>{rows}</table></div>")
    return html or '<p class="muted">No metrics reported.</p>'


def reportable(report: Mapping[str, Any]) -> str:
    """One reportable as safe HTML."""
    kind = report.get("kind")
    if kind == "markdown":
        return f'<div class="markdown">{markdown(str(report.get("text", "")))}</div>'
    if kind == "table":
        return f'<div class="scroll">{sanitize_table(str(report.get("html", "")))}</div>'
    if kind == "image":
        uri = png_data_uri(str(report.get("png", "")))
        return f'<img alt="{esc(report.get("name", ""))}" src="{uri}">' if uri else '<p class="muted">(invalid image)</p>'
    if kind == "metrics":
        values = dict(report.get("values") or {})
        return "<table>" + "".join(f'<tr><th>{esc(k)}</th><td class="num">{esc(_number(v))}</td></tr>'
                                   for k, v in values.items()) + "</table>"
    return f"<pre>{esc(report.get('text', ''))}</pre>"


def _reportables(executions: list[ExecutionRecord]) -> str:
    cards = []
    for e in executions:
        for report in e.extras.get("reports", ()):
            again = ' <span class="muted">(from the cache)</span>' if e.status == "cached" else ""
            cards.append(f'<div class="card reportable"><h3>{esc(report.get("name", ""))} — {esc(e.stage)} '
                         f"[{esc(e.param_set)}]{again}</h3>{reportable(report)}</div>")
    return "".join(cards) or '<p class="muted">No reportables.</p>'


def _artifacts(executions: list[ExecutionRecord]) -> str:
    rows = [f"<tr><td>{esc(e.stage)}</td><td>{esc(e.param_set)}</td><td>{esc(a.name)}</td>"
            f"<td><code>{esc(a.hash[:16])}</code></td><td class=\"num\">{byte_size(a.size)}</td><td>{esc(a.cacher)}</td></tr>"
            for e in executions for a in e.outputs.values()]
    if not rows:
        return '<p class="muted">No artifacts.</p>'
    return ('<div class="scroll"><table id="artifacts-table"><tr><th>stage</th><th>param set</th><th>artifact</th>'
            "<th>hash</th><th>size</th><th>cacher</th></tr>" + "".join(rows) + "</table></div>")


def _environment(run: RunRecord) -> str:
    git = run.git
    packages = dict(run.environment.get("packages", {}))
    lines = [f"<p>Python {esc(run.environment.get('python', '?'))} on {esc(run.host)} as {esc(run.user)} "
             f"(pid {esc(run.pid)}); {len(run.snapshot)} source files snapshotted.</p>"]
    if git.get("commit"):
        dirty = " (uncommitted changes)" if git.get("dirty") else ""
        lines.append(f"<p>git <code>{esc(git['commit'][:12])}</code> {esc(git.get('branch', ''))}{esc(dirty)}</p>")
        if git.get("diff"):
            lines.append(f"<details><summary>diff</summary><pre>{esc(git['diff'])}</pre></details>")
    if packages:
        lines.append("<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>"
                                         for k, v in sorted(packages.items())) + "</table>")
    return "".join(lines)


def _legend(statuses: Iterable[str]) -> str:
    return '<p class="legend">' + "".join(f"<span>{badge(s)}</span>" for s in dict.fromkeys(statuses)) + "</p>"


def render_page(record: RunRecord, executions: list[ExecutionRecord], *, engine: str = "auto",
                statuses: Mapping[str, str] | None = None, seconds: Mapping[str, float] | None = None) -> str:
    """The report of a run as one HTML page, from its record and its stage executions.

    ``statuses`` and ``seconds`` (by node) may cover more nodes than ``executions``: a caller
    holding a big run in memory passes only the executions the page lists in full.
    """
    statuses = statuses if statuses is not None else {e.node: e.status for e in executions}
    seconds = seconds if seconds is not None else {e.node: e.seconds for e in executions}
    duration = f"{record.seconds:.1f}s" if record.seconds is not None else "still running"
    failures = _failures(executions)
    rows, omitted = listed(executions)
    omitted += max(0, len(statuses) - len(executions))
    body = [
        f"<header><h1>{esc(record.title)}</h1>",
        f'<p class="meta">run <code>{esc(record.id)}</code> · {badge(record.status)} · started '
        f"{esc(local_time(record.started))} · {esc(duration)} · "
        + ", ".join(f"{n} {esc(s)}" for s, n in sorted(record.counts.items())) + "</p>",
        f'<p class="meta"><code>{esc(record.command)}</code></p>',
        '<nav><a href="#params">params</a><a href="#dag">DAG</a><a href="#timings">stages</a>'
        '<a href="#metrics">metrics</a><a href="#reports">reportables</a><a href="#artifacts">artifacts</a>'
        '<a href="#environment">environment</a></nav></header><main>',
        search_section(record.report, executions),
        f'<section id="params"><h2>Params</h2>{params_table(record.param_sets)}</section>',
        f'<section id="dag"><h2>DAG</h2><div class="scroll">{dag_svg(record.dag, statuses, seconds, engine=engine)}'
        f"</div>{_legend(statuses.values())}</section>",
        f'<section id="timings"><h2>Stages</h2>{_timings(rows)}{_omitted(omitted, record.id)}</section>',
        f'<section id="failures"><h2>Failures</h2>{failures}</section>' if failures else "",
        f'<section id="metrics"><h2>Metrics</h2>{_comparison(record, executions)}{_metrics(executions)}</section>',
        f'<section id="reports"><h2>Reportables</h2>{_reportables(executions)}</section>',
        f'<section id="artifacts"><h2>Artifacts</h2>{_artifacts(rows)}{_omitted(omitted, record.id)}</section>',
        f'<section id="environment"><h2>Environment</h2>{_environment(record)}</section></main>',
    ]
    return page(f"{record.title} — run {record.id}", "".join(body))


def render_report(history: History, run: RunRecord | str, *, engine: str = "auto") -> str:
    """The report of ``run`` (a record or a run reference) as one HTML page."""
    record = history.run(run) if isinstance(run, str) else run
    return render_page(record, history.executions(record, parts=False), engine=engine)


def write_html(path: Path, text: str) -> Path:
    """Write a page to ``path`` atomically; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.write_text(text, encoding="utf-8")
    os.replace(staged, path)
    return path


def write_report(history: History, run: RunRecord | str, path: Path, *, engine: str = "auto") -> Path:
    """Write the report of ``run`` to ``path`` atomically; returns ``path``."""
    return write_html(path, render_report(history, run, engine=engine))
