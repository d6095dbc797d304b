"""The "Search" section of a search run's report: optimization history, importances, the best trial."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .charts import bar_chart, metric_chart
from .markup import esc
from .values import ExecutionRecord

__all__ = ["search_section"]

ROWS = 200  # trials listed in the table (best first)


def _summary(report: str | None) -> dict[str, Any] | None:
    if not report:
        return None
    try:
        return dict(json.loads((Path(report).parent / "search.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def _value(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else esc(str(value))


def _stopped(trial: Mapping[str, Any]) -> str:
    if trial["state"] == "pruned" and trial.get("last_step") is not None:
        return f"pruned at step {trial['last_step']}"
    return "-"


def _lineage(best_set: str, executions: Sequence[ExecutionRecord]) -> str:
    """The best trial's stages in this run: what computed its value, with each key."""
    rows = "".join(f"<tr><td>{esc(e.stage)}</td><td>{esc(e.status)}</td><td><code>{esc((e.key or '')[:16])}</code></td>"
                   f"<td>{esc(', '.join(e.outputs))}</td></tr>" for e in executions if e.param_set == best_set)
    return ('<table id="best-lineage"><tr><th>stage</th><th>status</th><th>key</th><th>outputs</th></tr>'
            f"{rows}</table>" if rows else "")


def search_section(report: str | None, executions: Sequence[ExecutionRecord] = ()) -> str:
    """The section for the run whose report is ``report`` ("" when the run was not a search)."""
    summary = _summary(report)
    if summary is None:
        return ""
    trials = summary["trials"]
    maximize = summary["direction"] == "maximize"
    done = [t for t in trials if t["state"] == "complete" and t["value"] is not None]
    best_so_far, best = [], None
    for t in sorted(done, key=lambda t: t["number"]):
        best = t["value"] if best is None else (max if maximize else min)(best, t["value"])
        best_so_far.append((float(t["number"]), best))
    history = metric_chart(f"optimization history: {summary['metric']} by trial",
                           {"trial": [(float(t["number"]), t["value"]) for t in sorted(done, key=lambda t: t["number"])],
                            f"best so far ({summary['direction']})": best_so_far}) if done else ""
    importances: Mapping[str, float] = summary.get("importances") or {}
    bars = bar_chart("parameter importance (fANOVA)", importances) if importances else ""
    top = summary.get("best")
    best_html = ("<p>No trial completed yet.</p>" if top is None else
                 f'<p>Best: trial <b>#{top["number"]}</b>, {esc(summary["metric"])} = <b>{_value(top["value"])}</b>, '
                 f'param set <code>{esc(top["set"])}</code>: '
                 + ", ".join(f"{esc(k)} = <code>{_value(v)}</code>" for k, v in top["params"].items())
                 + f'. Its lineage: <code>experiment lineage ARTIFACT --set {esc(repr(top["set"]))}</code>.</p>'
                 + _lineage(top["set"], executions))
    ordered = sorted(trials, key=lambda t: (t["value"] is None, -(t["value"] or 0) if maximize else (t["value"] or 0)))
    names = list(trials[0]["params"]) if trials else []
    rows = "".join(
        f'<tr><td class="num">{t["number"]}</td><td>{esc(t["state"])}</td>'
        f'<td class="num">{_value(t["value"]) if t["value"] is not None else _stopped(t)}</td>'
        + "".join(f'<td class="num">{_value(t["params"].get(n, ""))}</td>' for n in names)
        + f'<td>{esc(t["set"])}</td></tr>' for t in ordered[:ROWS])
    table = (f'<div class="scroll"><table id="trials-table"><tr><th>trial</th><th>state</th><th>{esc(summary["metric"])}'
             "</th>" + "".join(f"<th>{esc(n)}</th>" for n in names) + "<th>param set</th></tr>" + rows + "</table></div>")
    counts: dict[str, int] = {}
    for t in trials:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    head = (f'<p class="meta">{len(trials)} of {summary["planned"]} trials · '
            + ", ".join(f"{n} {esc(s)}" for s, n in sorted(counts.items()))
            + f' · {esc(summary["sampler"])} sampler, {esc(summary["pruner"])} pruner, seed {summary["seed"]}</p>')
    return (f'<section id="search"><h2>Search: {esc(summary["direction"])} {esc(summary["metric"])}</h2>{head}{best_html}'
            f'<div class="charts">{history}{bars}</div>{table}</section>')
