"""``experiment ui``: a small local web UI over the run records (stdlib ``http.server``).

Served on 127.0.0.1 only. Pages: ``/`` the runs (sortable by date, status or a metric;
tick two and compare), ``/runs/<id>`` a run's report, ``/diff?run=A&run=B`` what changed
between two runs, ``/api/runs`` the listing as JSON. Plain HTML forms and links, no
JavaScript: sorting and comparing are done by the server.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from ..errors import RecordNotFound, RecordsError
from ..units import local_time
from .history import History
from .markup import esc
from .provenance import run_diff
from .report import badge, page, render_report
from .values import RunRecord

logger = logging.getLogger(__name__)

__all__ = ["make_server"]

HOST = "127.0.0.1"
SORTS = ("started", "status", "metric")
_STATUS_ORDER = {"failed": 0, "interrupted": 1, "running": 2, "succeeded": 3}


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def index_page(runs: Sequence[RunRecord], sort: str, metric: str, descending: bool) -> str:
    """The list of runs with sort links, a metric chooser and a compare form."""
    metrics = sorted({name for run in runs for name in run.metrics})
    metric = metric if metric in metrics else (metrics[0] if metrics else "")
    missing = float("-inf") if descending else float("inf")

    def key(run: RunRecord) -> Any:
        if sort == "status":
            return (_STATUS_ORDER.get(run.status, 9), run.started)
        if sort == "metric":
            return run.metrics.get(metric, missing)
        return run.started

    ordered = sorted(runs, key=key, reverse=descending)

    def header(name: str, label: str) -> str:
        flip = "asc" if sort == name and descending else "desc"
        arrow = (" ▼" if descending else " ▲") if sort == name else ""
        return (f'<th><a id="sort-{name}" href="/?sort={name}&amp;order={flip}&amp;metric={quote(metric)}">'
                f"{esc(label)}{arrow}</a></th>")

    rows = []
    for run in ordered:
        value = run.metrics.get(metric)
        rows.append(
            f'<tr class="run" data-run="{esc(run.id)}"><td><input type="checkbox" name="run" value="{esc(run.id)}" '
            f'aria-label="select {esc(run.id)}"></td><td><a class="run-link" href="/runs/{quote(run.id)}">'
            f"<code>{esc(run.id)}</code></a></td><td>{esc(local_time(run.started))}</td><td>{badge(run.status)}</td>"
            f'<td class="num">{"" if run.seconds is None else f"{run.seconds:.1f}"}</td>'
            f'<td class="num">{esc(run.counts.get("ran", 0))} / {esc(run.counts.get("cached", 0))} / '
            f'{esc(run.counts.get("failed", 0))}</td><td class="num metric">{"" if value is None else esc(_fmt(value))}</td>'
            f'<td>{esc(run.title)} <a class="sets" href="/compare?run={quote(run.id)}">sets</a></td></tr>')
    options = "".join(f'<option value="{esc(m)}"{" selected" if m == metric else ""}>{esc(m)}</option>'
                      for m in metrics)
    chooser = (f'<form method="get" action="/" class="meta">metric: <select name="metric" id="metric">{options}'
               '</select><input type="hidden" name="sort" value="metric"><input type="hidden" name="order" '
               'value="desc"> <button type="submit" id="sort-by-metric">sort by it</button></form>') if metrics else ""
    table = (f'<form method="get" action="/diff" id="compare"><table id="runs"><tr><th></th>{header("started", "run")}'
             f'<th>started</th>{header("status", "status")}<th>seconds</th><th>ran / cached / failed</th>'
             f'{header("metric", metric or "metric")}<th>title</th></tr>{"".join(rows)}</table>'
             '<p><button type="submit" id="compare-button">compare the two ticked runs</button></p></form>')
    body = (f"<header><h1>Runs</h1><p class=\"meta\">{len(runs)} recorded runs</p>{chooser}</header>"
            f"<main>{table if runs else '<p>No runs recorded yet. Run: experiment run NAME</p>'}</main>")
    return page("Runs", body)


def _rows(items: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    if not items:
        return '<p class="muted">no differences</p>'
    head = "".join(f"<th>{esc(c.upper() if c in ('a', 'b') else c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(_fmt(item.get(c, '')))}</td>" for c in columns) + "</tr>"
                   for item in items)
    return f'<div class="scroll"><table>{"<tr>" + head + "</tr>" + body}</table></div>'


def diff_page(data: Mapping[str, Any]) -> str:
    """The differences between two runs."""
    a, b = data["a"], data["b"]
    code = [{"stage": c["stage"], "changes": "; ".join(c["changes"])} for c in data["code"]]
    only = [{"what": what, "A": ", ".join(data[what]["only_a"]), "B": ", ".join(data[what]["only_b"])}
            for what in ("sets", "stages") if data[what]["only_a"] or data[what]["only_b"]]
    sections = [
        ("only in one run", _rows(only, ["what", "A", "B"])) if only else ("", ""),
        ("params", _rows(data["params"], ["set", "name", "a", "b"])),
        ("code", _rows(code, ["stage", "changes"])),
        ("environment", _rows(data["environment"], ["name", "a", "b"])),
        ("artifacts", _rows(data["artifacts"], ["name", "a", "b"])),
        ("metrics", _rows(data["metrics"], ["name", "a", "b"])),
    ]
    body = (f'<header><p class="meta"><a href="/">all runs</a></p><h1>Diff</h1>'
            f'<p>A: <a href="/runs/{quote(a["id"])}"><code>{esc(a["id"])}</code></a> {badge(a["status"])} {esc(a["title"])}</p>'
            f'<p>B: <a href="/runs/{quote(b["id"])}"><code>{esc(b["id"])}</code></a> {badge(b["status"])} {esc(b["title"])}</p>'
            "</header><main>" + "".join(f'<section id="diff-{esc(n.split()[0])}"><h2>{esc(n)}</h2>{html}</section>'
                                        for n, html in sections if n) + "</main>")
    return page(f"diff {a['id']} {b['id']}", body)


class _Handler(BaseHTTPRequestHandler):
    db_path: Path
    server_version = "orchestrator-ui"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        logger.debug("ui: " + format, *args)

    def _send(self, status: int, body: str, content_type: str = "text/html; charset=utf-8") -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if host not in ("127.0.0.1", "localhost"):  # a page elsewhere pointing a DNS name here (rebinding)
            self._send(403, page("forbidden", "<main><h1>Forbidden</h1><p>This UI answers only requests "
                                              "addressed to 127.0.0.1 or localhost.</p></main>"))
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            with History(self.db_path) as history:
                status, body, kind = self._route(history, url.path, query)
        except RecordNotFound as exc:
            status, body, kind = 404, page("not found", f"<main><h1>Not found</h1><p>{esc(exc)}</p>"
                                                       '<p><a href="/">all runs</a></p></main>'), "text/html"
        except RecordsError as exc:
            status, body, kind = 500, page("error", f"<main><h1>Run records unavailable</h1><p>{esc(exc)}</p></main>"), "text/html"
        self._send(status, body, f"{kind}; charset=utf-8")

    def _route(self, history: History, path: str, query: Mapping[str, list[str]]) -> tuple[int, str, str]:
        if path in ("/", "/index.html"):
            sort = query.get("sort", ["started"])[0]
            descending = query.get("order", ["desc"])[0] != "asc"
            return 200, index_page(history.runs(), sort if sort in SORTS else "started",
                                   query.get("metric", [""])[0], descending), "text/html"
        if path.startswith("/runs/") and path.count("/") == 2:
            record = history.run(path[len("/runs/"):])
            html = render_report(history, record)
            if record.status == "running":  # its stages' metrics arrive as they finish: look again
                html = html.replace("<head>", '<head><meta http-equiv="refresh" content="5">', 1)
            return 200, html, "text/html"
        if path == "/diff":
            chosen = query.get("run", [])
            if len(chosen) != 2:
                body = page("diff", "<main><h1>Pick two runs</h1><p>Tick exactly two runs on the "
                                    '<a href="/">list of runs</a>, then compare.</p></main>')
                return 400, body, "text/html"
            return 200, diff_page(run_diff(history, chosen[0], chosen[1])), "text/html"
        if path == "/compare":
            from .compare_page import compare_page

            record = history.run(query.get("run", ["last"])[0])
            executions = history.executions(record, parts=False)
            first = lambda name: query.get(name, [""])[0]  # noqa: E731
            return 200, compare_page(record, executions, sort=first("sort"), where=first("where"),
                                     columns=query.get("col", []), x=first("x"), y=first("y"),
                                     live=record.status == "running"), "text/html"
        if path == "/api/runs":
            data = [{"id": r.id, "title": r.title, "status": r.status, "started": r.started, "seconds": r.seconds,
                     "counts": dict(r.counts), "metrics": dict(r.metrics)} for r in history.runs()]
            return 200, json.dumps(data), "application/json"
        return 404, page("not found", '<main><h1>Not found</h1><p><a href="/">all runs</a></p></main>'), "text/html"


def make_server(db_path: Path, *, port: int = 8765) -> ThreadingHTTPServer:
    """A server for the run records at ``db_path`` on 127.0.0.1 (``port`` 0: any free port).

    Raises:
        RecordsError: the port is taken (with the fix).
    """
    handler = type("Handler", (_Handler,), {"db_path": Path(db_path)})
    try:
        server = ThreadingHTTPServer((HOST, port), handler)
    except OSError as exc:
        raise RecordsError(f"cannot listen on {HOST}:{port}: {exc.strerror or exc}. "
                           "Fix: pass --port with a free port (or --port 0 for any).") from exc
    server.daemon_threads = True
    return server
