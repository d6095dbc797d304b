"""``experiment compare``: one row per param set, the params that vary, the latest metrics, and freshness.

Each row is checked against the current code and param files with the planner: ``fresh`` when every
stage of the set is cached under today's key, ``stale`` (with the first stage that would run and why)
when a result exists but something it depends on changed, ``missing`` when the set never produced one.
Metrics are what stages report with ``ctx.metric`` (the final value, and min/max where there is a
series) and the numbers of outputs a stage declares as metrics (``@stage(..., metrics=["scores"])``:
a flat dict of numbers). A fresh row's come from the stored result; a stale row's from the last
execution the run records hold, so a table of last week's sweep shows what changed since.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..engine.dag import Dag
from ..engine.planner import Action, Plan
from ..errors import UsageError
from .values import final_metrics

__all__ = ["Comparison", "Row", "across_runs", "compare", "lower_is_better", "recorded", "select"]

_LOWER = re.compile(r"(loss|err|error|mse|mae|rmse|perplexity|ppl|seconds|time|latency|wer|cer)", re.I)


def lower_is_better(metric: str) -> bool:
    """Losses, errors and times are minimized; anything else (accuracy, F1, AUC...) is maximized."""
    return bool(_LOWER.search(metric[:-4] if metric.endswith((".min", ".max")) else metric))


@dataclass(frozen=True)
class Row:
    """One param set: its varying params, its latest metrics, and whether they are still current."""

    param_set: str
    state: str  # "fresh", "stale" or "missing"
    why: str = ""  # for a stale row: the first stage that would run, and why
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    run_id: str = ""  # the run that computed the metrics ("" when only the store holds them)


@dataclass(frozen=True)
class Comparison:
    """The table: param columns, metric columns, rows, and the best row per metric."""

    params: tuple[str, ...]
    metrics: tuple[str, ...]
    rows: tuple[Row, ...]

    def best(self) -> dict[str, str]:
        """metric -> the param set with its best value (ties: the first row)."""
        found: dict[str, str] = {}
        for metric in self.metrics:
            scored = [(r.metrics[metric], r.param_set) for r in self.rows
                      if metric in r.metrics and math.isfinite(r.metrics[metric])]
            if scored:
                pick = min if lower_is_better(metric) else max
                found[metric] = pick(scored, key=lambda pair: pair[0])[1]
        return found

    def to_dict(self) -> dict[str, Any]:
        return {"params": list(self.params), "metrics": list(self.metrics), "best": self.best(),
                "rows": [{"set": r.param_set, "state": r.state, "why": r.why, "run": r.run_id,
                          "params": dict(r.params), "metrics": dict(r.metrics)} for r in self.rows]}


def compare(dag: Dag, plan: Plan, sets: Mapping[str, Mapping[str, Any]], latest: Callable[[str, str], Any],
            loaded: Callable[[Any, str], Mapping[str, Any] | None]) -> Comparison:
    """The comparison of the sets of one experiment.

    Args:
        dag: The experiment's DAG (its nodes by param set).
        plan: Today's plan of it.
        sets: ``{set name: its params}``.
        latest: ``(stage, set) -> (run id, key record) | None``: the result of the last recorded
            execution that stored one (its key record, or the execution record when the store no
            longer holds it).
        loaded: ``(record, output name) -> dict | None``: a declared metrics output's value.
    """
    flat = {name: _flatten(values) for name, values in sets.items()}
    varying = sorted({key for values in flat.values() for key in values
                      if len({repr(v.get(key)) for v in flat.values()}) > 1}) if len(flat) > 1 else []
    rows = []
    for name in sets:
        nodes = [nid for nid, node in dag.nodes.items() if node.param_set == name]
        metrics: dict[str, float] = {}
        state, why, run_id, found = "fresh", "", "", False
        for nid in nodes:  # (topological order: the first stage that would run is the one named)
            node, decision = dag.nodes[nid], plan.decisions[nid]
            if decision.action is Action.CACHED and decision.record is not None:
                source: Any = decision.record
                extras = decision.record.extras
            else:
                if state == "fresh":
                    state, why = "stale", f"{node.stage.name}: {decision.reasons[0] if decision.reasons else 'runs'}"
                last = latest(node.stage.name, name)
                if last is None:
                    continue
                run_id, source = run_id or last[0], last[1]
                extras = source.extras
            found = True
            metrics.update(_metrics(extras))
            for output in node.stage.options.get("metrics") or ():
                values = loaded(source, output)
                metrics.update({f"{output}.{k}": float(v) for k, v in (values or {}).items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)})
        if not found:
            state, why = "missing", ""
        rows.append(Row(name, state, why, {k: flat[name].get(k) for k in varying}, metrics, run_id))
    columns = sorted({m for r in rows for m in r.metrics}, key=lambda m: (m.split(".")[0], m))
    return Comparison(tuple(varying), tuple(columns), tuple(rows))


def recorded(sets: Mapping[str, Mapping[str, Any]], executions: Iterable[Any]) -> Comparison:
    """The comparison of one recorded run's sets (its report's table): metrics as the run left them."""
    flat = {name: _flatten(values) for name, values in sets.items()}
    varying = sorted({key for values in flat.values() for key in values
                      if len({repr(v.get(key)) for v in flat.values()}) > 1}) if len(flat) > 1 else []
    metrics: dict[str, dict[str, float]] = {name: {} for name in sets}
    for e in executions:
        if e.param_set in metrics and e.status in ("ran", "cached"):
            metrics[e.param_set].update(_metrics(e.extras or {}))
    rows = tuple(Row(name, "fresh", "", {k: flat[name].get(k) for k in varying}, metrics[name]) for name in sets)
    columns = sorted({m for r in rows for m in r.metrics}, key=lambda m: (m.split(".")[0], m))
    return Comparison(tuple(varying), tuple(columns), rows)


def across_runs(history: Any, runs: Iterable[Any]) -> Comparison:
    """One row per (run, param set) of recorded ``runs``, as they left them: ``RUN set`` rows, the params that
    vary across all of them, their final metrics."""
    sets: dict[str, Mapping[str, Any]] = {}
    metrics: dict[str, dict[str, float]] = {}
    owner: dict[str, str] = {}
    for run in runs:
        for e in history.executions(run, parts=False):
            if e.param_set in run.param_sets and e.status in ("ran", "cached"):
                label = f"{run.id} {e.param_set}"
                sets.setdefault(label, run.param_sets[e.param_set])
                owner[label] = run.id
                metrics.setdefault(label, {}).update(_metrics(e.extras or {}))
    flat = {name: _flatten(values) for name, values in sets.items()}
    varying = sorted({key for values in flat.values() for key in values
                      if len({repr(v.get(key)) for v in flat.values()}) > 1}) if len(flat) > 1 else []
    rows = tuple(Row(name, "recorded", "", {k: flat[name].get(k) for k in varying}, metrics.get(name, {}), owner[name])
                 for name in sets)
    columns = sorted({m for r in rows for m in r.metrics}, key=lambda m: (m.split(".")[0], m))
    return Comparison(tuple(varying), tuple(columns), rows)


def _metrics(extras: Mapping[str, Any]) -> dict[str, float]:
    """Final values, and min/max of every metric reported more than once (a series)."""
    found = final_metrics(extras)
    series: dict[str, list[float]] = {}
    for entry in extras.get("metrics", ()):
        series.setdefault(str(entry.get("name")), []).append(float(entry.get("value")))
    for name, values in series.items():
        if len(values) > 1:
            found[f"{name}.min"], found[f"{name}.max"] = min(values), max(values)
    return found


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "name" and not prefix:
            continue
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def select(comparison: Comparison, *, where: str | None = None, sort: str | None = None,
           states: Iterable[str] | None = None) -> Comparison:
    """The rows that satisfy ``where`` (``"lr < 0.1 and accuracy > 0.9"``), in the given ``states``,
    best first by ``sort`` (a metric or param)."""
    rows = list(comparison.rows)
    if states is not None:
        wanted = set(states)
        rows = [r for r in rows if r.state in wanted]
    if where:
        test = _condition(where)
        rows = [r for r in rows if test({**r.params, **r.metrics, "state": r.state, "set": r.param_set})]
    if sort:
        if sort not in comparison.metrics and sort not in comparison.params:
            raise UsageError(f"--sort {sort!r}: no such column. Fix: use one of "
                             f"{', '.join([*comparison.params, *comparison.metrics]) or '(none)'}.")
        low = lower_is_better(sort) if sort in comparison.metrics else True
        present = [r for r in rows if _value(r, sort) is not None]
        absent = [r for r in rows if _value(r, sort) is None]
        rows = sorted(present, key=lambda r: _value(r, sort), reverse=not low) + absent  # type: ignore[arg-type,return-value]
    return Comparison(comparison.params, comparison.metrics, tuple(rows))


def _value(row: Row, column: str) -> Any:
    return row.metrics.get(column, row.params.get(column))


_ALLOWED = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare, ast.Eq,
            ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Name, ast.Attribute, ast.Load,
            ast.Constant, ast.List, ast.Tuple, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div)


def _condition(text: str) -> Callable[[Mapping[str, Any]], bool]:
    """A ``--where`` expression over columns (dotted names as written), evaluated without ``eval``."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise UsageError(f"--where {text!r} is not an expression ({exc.msg}). "
                         "Fix: e.g. --where 'lr < 0.1 and accuracy > 0.9'.") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise UsageError(f"--where {text!r}: {type(node).__name__} is not allowed. Fix: compare columns with "
                             "numbers or strings, joined by and/or/not.")

    def test(row: Mapping[str, Any]) -> bool:
        try:
            return bool(_evaluate(tree.body, row))
        except (KeyError, TypeError):
            return False  # a row without that column, or not comparable: not selected

    return test


def _evaluate(node: ast.AST, row: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Name, ast.Attribute)):
        return row[_dotted(node)]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_evaluate(e, row) for e in node.elts]
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, row)
        return (not value) if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.BoolOp):
        values = (_evaluate(v, row) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, row), _evaluate(node.right, row)
        ops: dict[type, Callable[[Any, Any], Any]] = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
                                                      ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}
        return ops[type(node.op)](left, right)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, row)
        for op, comparator in zip(node.ops, node.comparators):
            right = _evaluate(comparator, row)
            checks: dict[type, Callable[[Any, Any], bool]] = {
                ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
                ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
                ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
            if not checks[type(op)](left, right):
                return False
            left = right
        return True
    raise TypeError(type(node).__name__)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    raise TypeError(type(node).__name__)
