"""The UI's comparison of a run's param sets: a sortable, filterable table with a column chooser, and a
scatter plot of a param against a metric (``experiment ui``, ``/compare?run=RUN``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape as esc
from typing import Any
from urllib.parse import urlencode

from ..errors import UsageError
from .charts import scatter_chart
from .compare import Comparison, lower_is_better, recorded, select
from .report import badge, page
from .values import ExecutionRecord, RunRecord

__all__ = ["compare_page"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return "—" if value is None else str(value)


def compare_page(record: RunRecord, executions: Sequence[ExecutionRecord], *, sort: str = "", where: str = "",
                 columns: Sequence[str] = (), x: str = "", y: str = "", live: bool = False) -> str:
    """The page: ``columns`` chosen metric columns (all when empty), rows kept by ``where``, best first by ``sort``."""
    full = recorded(record.param_sets, executions)
    error = ""
    try:
        table = select(full, where=where or None, sort=sort or None)
    except UsageError as exc:
        table, error = full, str(exc)
    shown = [m for m in full.metrics if not columns or m in columns]
    state = {"run": record.id, "where": where, "sort": sort, "x": x, "y": y}

    def link(**changes: str) -> str:
        query = {**state, **changes}
        pairs = [(k, v) for k, v in query.items() if v] + [("col", c) for c in columns]
        return "/compare?" + urlencode(pairs)

    best = Comparison(table.params, tuple(shown), table.rows).best()
    head = "".join(f'<th><a class="sort" href="{esc(link(sort=name))}">{esc(name)}{" ▼" if name == sort else ""}</a></th>'
                   for name in (*table.params, *shown))
    rows = "".join(
        f'<tr class="set"><th>{esc(r.param_set)}</th>'
        + "".join(f"<td>{esc(_fmt(r.params.get(p)))}</td>" for p in table.params)
        + "".join(f'<td class="num{" best" if best.get(m) == r.param_set else ""}">{esc(_fmt(r.metrics.get(m)))}</td>'
                  for m in shown) + "</tr>" for r in table.rows)
    chooser = "".join(f'<label><input type="checkbox" name="col" value="{esc(m)}"'
                      f'{" checked" if m in shown else ""}> {esc(m)}</label> ' for m in full.metrics)
    hidden = "".join(f'<input type="hidden" name="{k}" value="{esc(v)}">' for k, v in state.items() if v and k != "where")
    form = (f'<form method="get" action="/compare" id="filter">{hidden}'
            f'<p>where <input name="where" id="where" size="40" value="{esc(where)}" '
            f'placeholder="lr &lt; 0.1 and accuracy &gt; 0.9"> <button type="submit">apply</button></p>'
            f'<p class="meta" id="columns">columns: {chooser}</p></form>')
    plot = _scatter(table, x, y)
    body = (f'<header><p class="meta"><a href="/">all runs</a> · <a href="/runs/{esc(record.id)}">report</a></p>'
            f'<h1>Param sets of run <code>{esc(record.id)}</code> {badge(record.status)}</h1>'
            f'<p class="meta">{esc(record.title)} · the best of each column in bold'
            + (" · refreshes every 5 s while the run is going" if live else "") + "</p></header><main>"
            + (f'<p class="error" id="where-error">{esc(error)}</p>' if error else "") + form
            + (f'<div class="scroll"><table id="compare-table"><tr><th>set</th>{head}</tr>{rows}</table></div>'
               if table.rows else '<p class="muted">no param set matches</p>')
            + plot + "</main>")
    html = page(f"compare — run {record.id}", body)
    return html.replace("<head>", '<head><meta http-equiv="refresh" content="5">', 1) if live else html


def _scatter(table: Comparison, x: str, y: str) -> str:
    numeric = [p for p in table.params if all(isinstance(r.params.get(p), (int, float)) for r in table.rows)]
    if not numeric or not table.metrics or not table.rows:
        return ""
    x = x if x in numeric else numeric[0]
    y = y if y in table.metrics else table.metrics[0]
    points = [(float(r.params[x]), r.metrics[y], r.param_set) for r in table.rows
              if y in r.metrics and math.isfinite(r.metrics[y])]
    direction = "lower is better" if lower_is_better(y) else "higher is better"
    return (f'<section id="scatter"><h2>{esc(y)} against {esc(x)}</h2><p class="meta">{direction}; '
            f'other axes: {", ".join(esc(p) for p in numeric)} × {", ".join(esc(m) for m in table.metrics)} '
            f"(x=, y= in the address)</p>{scatter_chart(f'{y} by {x}', points, x, y)}</section>")
