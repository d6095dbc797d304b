"""Everything the CLI shows on a terminal: progress, plans, summaries, listings (rich, imported lazily).

`experiment run` writing to a log file or a pipe uses :mod:`.plain` instead, without rich; both show
the same content.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..api import Session
from ..engine.dag import Node
from ..engine.driver import NodeOutcome, RunResult
from ..engine.planner import Action, Decision, Plan
from ..project.params import Experiment
from ..store.base import Store
from ..units import byte_size
from .plain import (
    DETAIL_LIMIT,
    STYLE,
    Cell,
    Grid,
    StatusLines,
    column_widths,
    console,
    failure_lines,
    summary_grid,
    summary_head,
)

err = console(stderr=True)
out = console()
RUNNING_SHOWN = 8  # running nodes the live display lists (then a count)


def log_line(level: int, name: str, message: str) -> None:
    """A library log record above the progress display: ``warning: ...`` in yellow, lower levels dim."""
    colour = "yellow" if level >= logging.WARNING else "dim"
    err.print(f"[{colour}]{name.lower()}: {escape(message)}[/]")


class ProgressObserver(StatusLines):
    """A live line for the running stage (and a map's progress bar) above the status lines."""

    def __init__(self, session: Session) -> None:
        super().__init__(session.dag)
        self.nodes = session.dag.nodes
        self.running: dict[str, tuple[str, float]] = {}  # node -> (label, started)
        self.map_states: dict[str, Any] = {}
        self.gpus: Mapping[str, str] = {}  # node -> the GPUs it holds
        self.parked: Sequence[str] = ()  # nodes waiting for GPUs, cores or memory
        from rich.live import Live

        self.live = Live(console=err, transient=True, refresh_per_second=8, get_renderable=self._render)

    def __enter__(self) -> ProgressObserver:
        self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.stop()

    def _render(self) -> Text:
        done = (f"   {self.done}/{self.total} done", "dim")
        if not self.running:
            return Text(f"  {self.done}/{self.total} done", style="dim")
        now = time.monotonic()
        line = Text()
        shown = list(self.running.items())[:RUNNING_SHOWN]
        for i, (nid, (label, started)) in enumerate(shown):
            if i:
                line.append("\n")
            gpus = self.gpus.get(nid)
            line.append_text(Text.assemble(("  RUNNING ", "bold green"), label, (f"  {now - started:5.1f}s", "dim"),
                                           (f"  GPU {gpus}", "cyan") if gpus else "", done if i == 0 else ""))
            if nid in self.map_states:
                line.append("\n")
                line.append_text(map_bar(self.map_states[nid]))
        if len(self.running) > len(shown):
            line.append(f"\n  and {len(self.running) - len(shown)} more running", style="dim")
        if self.parked:
            names = ", ".join(f"{self.nodes[n].stage.name} [{self.nodes[n].param_set}]" for n in self.parked[:3])
            more = f" and {len(self.parked) - 3} more" if len(self.parked) > 3 else ""
            line.append(f"\n  WAITING for GPUs/cores: {names}{more}", style="yellow")
        return line

    def node_started(self, node: Node, decision: Decision) -> None:
        self.running[node.id] = (f"{node.stage.name} [{node.param_set}]", time.monotonic())
        self.map_states.pop(node.id, None)

    def map_progress(self, node_id: str, progress: Any) -> None:
        self.map_states[node_id] = progress

    def resources(self, holding: Mapping[str, str], waiting: Sequence[str]) -> None:
        self.gpus, self.parked = dict(holding), tuple(waiting)

    def node_finished(self, outcome: NodeOutcome) -> None:
        self.running.pop(outcome.node, None)
        self.map_states.pop(outcome.node, None)
        super().node_finished(outcome)

    def write(self, parts: list[Cell]) -> None:
        err.print(Text.assemble(*parts), no_wrap=True, overflow="ellipsis")


def map_bar(state: Any, width: int = 30) -> Text:
    """``  [#########.....]  6,012/10,000 items  4,000 cached  2,012 computed  1 failed  812/s  ETA 5s``"""
    fraction = state.done / state.total if state.total else 1.0
    filled = int(fraction * width)
    eta = f"  ETA {state.eta:.0f}s" if state.eta is not None and state.done < state.total else ""
    return Text.assemble(
        ("    [" + "#" * filled + "." * (width - filled) + "]", "green"),
        f"  {state.done:,}/{state.total:,} items",
        (f"  {state.cached:,} cached", "cyan"),
        (f"  {state.computed:,} computed", "green"),
        (f"  {state.failed:,} failed", "red" if state.failed else "dim"),
        (f"  {state.rate:,.0f}/s{eta}", "dim"),
    )


def summary(result: RunResult, command: str) -> None:
    """The end-of-run table, then failures with their tracebacks and how to resume."""
    out.print(Text.assemble(*summary_head(result)))
    out.print(rich_table(summary_grid(result, out.width)))
    for line in failure_lines(result, command):
        out.print(Text.assemble(*line), soft_wrap=True)


def rich_table(grid: Grid) -> Table:
    """A :class:`~.plain.Grid` as a rich table."""
    table = Table()
    for name, right in zip(grid.header, grid.right):
        table.add_column(name, justify="right" if right else "left", no_wrap=not right)
    for row in grid.rows:
        table.add_row(*(Text(text, style=style) for text, style in row))
    return table


def plan(session: Session, the_plan: Plan, *, as_json: bool) -> None:
    """Print a plan: one line per node with its action and reasons."""
    decisions = list(the_plan.decisions.values())
    if as_json:
        click.echo(json.dumps([{"stage": d.stage, "param_set": d.param_set, "action": d.action.value,
                                "key": d.key, "reasons": list(d.reasons),
                                "conservative": list(session.fingerprints[d.stage].conservative)}
                               for d in decisions], indent=1))
        return
    stage_width, set_width = column_widths(session.dag)
    for decision in decisions:
        if len(decisions) > DETAIL_LIMIT and decision.action is Action.CACHED:
            continue
        reasons = "; ".join(decision.reasons)
        out.print(Text.assemble((f"  {decision.action.value:<9}", STYLE[decision.action]),
                                (f"{decision.stage:<{stage_width}}  ", "bold"),
                                f"{decision.param_set:<{set_width}}  ", (reasons, "dim")))
    for stage in dict.fromkeys(d.stage for d in decisions):  # keys that stand on a whole module
        for label in session.fingerprints[stage].conservative:
            out.print(Text(f"  note: {stage}: code: {label}; any edit of that module reruns {stage}", style="yellow"))
    counts = ", ".join(f"{the_plan.count(a)} {a.value.lower()}" for a in Action)
    out.print(f"{len(decisions)} nodes: {counts}")
    if session.experiment.search is not None:
        out.print(Text(search_line(session.experiment), style="dim"))


def dag_text(session: Session, fmt: str) -> str:
    """The stage graph as text, Mermaid or Graphviz dot."""
    stages = [session.stages[s] for s in dict.fromkeys(n.stage.name for n in session.dag.nodes.values())]
    producers = {a: s.name for s in session.stages.values() for a in s.outputs}
    edges = [(producers[a], s.name, a) for s in stages for a in s.inputs]
    if fmt == "mermaid":
        lines = ["graph TD"] + [f"  {p} -->|{a}| {c}" for p, c, a in edges]
        lines += [f"  {s.name}" for s in stages if not s.inputs]
        return "\n".join(lines)
    if fmt == "json":
        return json.dumps(_dag_json(session, stages, edges), indent=1, default=str)
    if fmt == "dot":
        lines = ["digraph experiment {", "  rankdir=LR;", "  node [shape=box];"]
        lines += [f'  "{s.name}";' for s in stages]
        lines += [f'  "{p}" -> "{c}" [label="{a}"];' for p, c, a in edges]
        return "\n".join(lines + ["}"])
    lines = []
    for s in stages:
        kind = "aggregate" if s.aggregate else "stage"
        params = f"  params: {', '.join(s.param_names)}" if s.params else ""
        lines.append(f"{s.name} ({kind}): {', '.join(s.inputs) or '-'} -> {', '.join(s.outputs)}{params}")
    sets = [p.name for p in session.experiment.sets]
    lines.append(f"{len(stages)} stages x {len(sets)} param sets = {len(session.dag)} nodes; targets: "
                 f"{', '.join(session.dag.targets)}")
    return "\n".join(lines)


def _dag_json(session: Session, stages: list[Any], edges: list[tuple[str, str, str]]) -> dict[str, Any]:
    dag = session.dag
    return {
        "stages": [{"name": s.name, "kind": "aggregate" if s.aggregate else "stage", "module": s.module,
                    "inputs": list(s.inputs), "outputs": list(s.outputs), "params": list(s.param_names),
                    **({"map_over": s.map_over} if s.map_over else {})} for s in stages],
        "edges": [{"from": p, "to": c, "artifact": a} for p, c, a in edges],
        "param_sets": [p.name for p in session.experiment.sets],
        "targets": list(dag.targets),
        "nodes": [{"id": n.id, "stage": n.stage.name, "param_set": n.param_set, "upstream": list(dag.upstream(n.id)),
                   "params": dict(n.key_params)} for n in dag.nodes.values()],
    }


def param_sets(experiment: Experiment, *, as_json: bool) -> None:
    """Print resolved param sets."""
    data = {s.name: dict(s.values) for s in experiment.sets}
    if as_json:
        click.echo(json.dumps(data, indent=1, default=str))
        return
    import yaml

    for name, values in data.items():
        out.print(f"[bold]{escape(name)}[/]")
        out.print(Text("  " + yaml.safe_dump(values, sort_keys=True).rstrip().replace("\n", "\n  ")))
    if experiment.search is not None:
        out.print(Text(search_line(experiment), style="dim"))


def search_line(experiment: Experiment) -> str:
    """What a search file holds beyond the trials listed: its space and how many trials are left to ask."""
    search = experiment.search
    assert search is not None
    space = ", ".join(d.name + (f" in {list(d.choices)}" if d.kind == "categorical" else
                                f" {d.kind} [{d.low:g}, {d.high:g}]{' log' if d.log else ''}") for d in search.spec.space)
    asked = len(experiment.sets)
    return (f"search {search.name}: {asked} of {search.spec.trials} trials listed (pruned ones aside; {search.spec.direction} "
            f"{search.spec.metric}; {space}); `experiment run {search.name}` asks the rest")


def cache_listing(store: Store, *, as_json: bool, stage: str | None = None, artifact_name: str | None = None,
                  param_set: str | None = None) -> None:
    """Print every stored artifact (of ``stage``, named ``artifact_name``, of ``param_set``) with its size and age."""
    rows: list[dict[str, Any]] = []
    now = time.time()
    for record in store.records():
        if (stage and record.stage != stage) or (param_set and record.param_set != param_set):
            continue
        for artifact in record.outputs.values():
            if artifact_name and artifact.name != artifact_name:
                continue
            rows.append({"stage": record.stage, "param_set": record.param_set, "artifact": artifact.name,
                         "cacher": artifact.cacher, "size": artifact.size, "age_seconds": round(now - record.created),
                         "hash": artifact.hash, "key": record.key})
    rows.sort(key=lambda r: (r["stage"], r["param_set"], r["artifact"]))
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    table = Table(title=f"{store.url} — {len(rows)} artifacts", title_justify="left")
    for column in ("stage", "param set", "artifact", "cacher", "size", "age", "hash"):
        table.add_column(column, justify="right" if column in ("size", "age") else "left")
    for r in rows:
        table.add_row(*(Text(str(v)) for v in (r["stage"], r["param_set"], r["artifact"], r["cacher"],
                                                byte_size(r["size"]), _age(r["age_seconds"]), r["hash"][:10])))
    out.print(table)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def verify_report(report: Any, *, as_json: bool) -> None:
    """Print what `experiment cache verify` found."""
    problems = [{"stage": p.stage, "param_set": p.param_set, "artifact": p.artifact, "key": p.key,
                 "object": p.object, "message": p.message} for p in report.problems]
    if as_json:
        click.echo(json.dumps({"records": report.records, "artifacts": report.artifacts, "problems": problems,
                               "repaired": report.repaired}, indent=1))
        return
    for p in report.problems:
        out.print(Text.assemble(("  BROKEN  ", "bold red"), f"{p.stage} [{p.param_set}] {p.artifact}: ",
                                (p.message, "dim")), soft_wrap=True)
    verdict = "all intact" if not report.problems else f"{len(report.problems)} broken"
    out.print(f"checked {report.artifacts} artifacts in {report.records} key records: {verdict}")
    if report.problems and not report.repaired:
        out.print("Fix: experiment cache verify --repair (the next run recomputes exactly these stages)")
    elif report.problems:
        out.print("Forgot them: the next run recomputes exactly these stages.")
