"""Everything the CLI shows: progress, plans, summaries, listings (rich, imported lazily)."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..api import Session
from ..capture import console_only
from ..dag import ALL, Node
from ..params import Experiment
from ..planner import Action, Decision, Plan
from ..runner import NodeOutcome, RunObserver, RunResult, Status
from ..store import Store

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

STYLE = {
    Status.RAN: "green", Status.CACHED: "cyan", Status.FAILED: "bold red",
    Status.SKIPPED: "yellow", Status.INTERRUPTED: "magenta", Status.SHARDED: "blue",
    Action.RUN: "green", Action.CACHED: "cyan", Action.MAY_RUN: "yellow",
}
DETAIL_LIMIT = 60  # above this many nodes, list only what ran or failed
SUMMARY_ROWS = 25  # stages listed in the end-of-run table (the slowest ones)
MATRIX_SETS = 8  # up to this many param sets, the table is stage x param set


class LogHandler(logging.Handler):
    """Library log records, printed above the progress display."""

    def emit(self, record: logging.LogRecord) -> None:
        colour = "yellow" if record.levelno >= logging.WARNING else "dim"
        with console_only():  # a stage's log gets the record from its own handler, once
            err.print(f"[{colour}]{record.levelname.lower()}: {escape(record.getMessage())}[/]")


class ProgressObserver(RunObserver):
    """A live line for the running stage, a fixed-width status line per finished node."""

    def __init__(self, session: Session) -> None:
        self.widths = column_widths(session)
        self.total = len(session.dag)
        self.verbose_nodes = self.total <= DETAIL_LIMIT
        self.done = 0
        self.current = ""
        self.started = 0.0
        self.map_state: Any = None
        self.live: Any = None
        if err.is_terminal:  # a log file or a pipe gets the status lines only, no live display
            from rich.live import Live

            self.live = Live(console=err, transient=True, refresh_per_second=8, get_renderable=self._render)

    def __enter__(self) -> ProgressObserver:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.stop()

    def _render(self) -> Text:
        if not self.current:
            return Text(f"  {self.done}/{self.total} done", style="dim")
        elapsed = time.monotonic() - self.started
        line = Text.assemble(("  RUNNING ", "bold green"), self.current, (f"  {elapsed:5.1f}s", "dim"),
                             (f"   {self.done}/{self.total} done", "dim"))
        if self.map_state is not None:
            line.append("\n")
            line.append_text(map_bar(self.map_state))
        return line

    def node_started(self, node: Node, decision: Decision) -> None:
        self.current = f"{node.stage.name} [{node.param_set}]"
        self.started = time.monotonic()
        self.map_state = None

    def map_progress(self, node_id: str, progress: Any) -> None:
        self.map_state = progress

    def node_finished(self, outcome: NodeOutcome) -> None:
        self.done += 1
        self.current = ""
        if self.verbose_nodes or outcome.status in (Status.RAN, Status.FAILED, Status.INTERRUPTED):
            if err.is_terminal:
                err.print(status_line(outcome, self.widths), no_wrap=True, overflow="ellipsis")
            else:  # a log file or a pipe: plain text, and much cheaper for thousands of nodes
                err.file.write("".join(text for text, _ in _status_parts(outcome, self.widths)) + "\n")


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


def column_widths(session: Session) -> tuple[int, int]:
    """Widths of the stage and param-set columns."""
    nodes = session.dag.nodes.values()
    stage = max((len(n.stage.name) for n in nodes), default=8)
    param_set = max((len(n.param_set) for n in nodes), default=8)
    return min(stage, 30), min(param_set, 40)


def status_line(outcome: NodeOutcome, widths: tuple[int, int] = (20, 24)) -> Text:
    """``RAN         split      baseline      1.2s  3f9a1c2e``"""
    return Text.assemble(*_status_parts(outcome, widths))


def _status_parts(outcome: NodeOutcome, widths: tuple[int, int]) -> list[tuple[str, str]]:
    status = outcome.status
    seconds = f"{outcome.seconds:6.1f}s" if status in (Status.RAN, Status.FAILED) else "       "
    return [
        (f"  {status.value.upper():<12}", STYLE[status]),
        (f"{outcome.stage:<{widths[0]}}  ", "bold"),
        (f"{outcome.param_set:<{widths[1]}}  ", ""),
        (seconds, "dim"),
        (f"  {(outcome.key or '')[:8]}", "dim"),
    ]


def summary(session: Session, result: RunResult, command: str) -> None:
    """The end-of-run table, then failures with their tracebacks and how to resume."""
    per_stage: dict[str, Counter[Status]] = defaultdict(Counter)
    seconds: dict[str, float] = defaultdict(float)
    for outcome in result.outcomes:
        per_stage[outcome.stage][outcome.status] += 1
        seconds[outcome.stage] += outcome.seconds
    colour = "green" if result.ok else "red"
    out.print(f"[bold]run {result.run_id}[/]: [{colour}]{result.status}[/] in {result.seconds:.1f}s")
    sets = list(dict.fromkeys(o.param_set for o in result.outcomes))
    if 1 < len(sets) <= MATRIX_SETS and len(per_stage) <= SUMMARY_ROWS and _fits(list(per_stage), sets):
        out.print(_matrix(result, list(per_stage), sets))
    else:
        out.print(_counts(per_stage, seconds))
    _failures(result, command)


def _label(name: str) -> str:
    """A set's column header: what its name varies (``lr=0.01,hidden=32``), ``all sets`` for aggregates."""
    if name == ALL:
        return "all sets"
    return name[name.index("[") + 1 : -1] if name.endswith("]") and "[" in name else name


def _fits(stages: list[str], sets: list[str]) -> bool:
    """Whether the stage x set table shows every name whole in the console's width."""
    widths = [max(map(len, stages))] + [max(len(_label(name)), len("cached 00.0s")) for name in sets]
    return sum(widths) + 3 * len(widths) + 1 <= out.width


def _matrix(result: RunResult, stages: list[str], sets: list[str]) -> Table:
    """Stage x param set: each cell the node's status (and seconds when it ran)."""
    cells = {(o.stage, o.param_set): o for o in result.outcomes}
    table = Table()
    table.add_column("stage", style="bold")
    for name in sets:
        table.add_column(_label(name), no_wrap=True)
    for stage in stages:
        row = []
        for name in sets:
            outcome = cells.get((stage, name))
            if outcome is None:
                row.append(Text(""))
                continue
            ran = outcome.status in (Status.RAN, Status.FAILED)
            row.append(Text(outcome.status.value + (f" {outcome.seconds:.1f}s" if ran else ""),
                            style=STYLE[outcome.status]))
        table.add_row(Text(stage), *row)
    return table


def _counts(per_stage: dict[str, Counter[Status]], seconds: dict[str, float]) -> Table:
    """Per stage: how many of its nodes ran, were cached, failed... and their seconds."""
    table = Table()
    shown = [s for s in Status if any(c[s] for c in per_stage.values())]
    table.add_column("stage", style="bold")
    for status in shown:
        table.add_column(status.value, justify="right", style=STYLE[status])
    table.add_column("seconds", justify="right")
    ordered = list(per_stage)
    if len(ordered) > SUMMARY_ROWS:  # the slowest stages; the rest in one line
        ordered = sorted(ordered, key=lambda name: -seconds[name])[:SUMMARY_ROWS]
    for stage in ordered:
        counts = per_stage[stage]
        table.add_row(Text(stage), *[str(counts[s] or "") for s in shown], f"{seconds[stage]:.1f}")
    if len(per_stage) > len(ordered):
        rest = [s for s in per_stage if s not in ordered]
        totals = Counter[Status]()
        for name in rest:
            totals.update(per_stage[name])
        table.add_row(Text(f"... {len(rest)} more stages", style="dim"), *[str(totals[s] or "") for s in shown],
                      f"{sum(seconds[n] for n in rest):.1f}")
    return table


def _failures(result: RunResult, command: str) -> None:
    """Each failure with its traceback and log, then how to resume."""
    for failure in result.failures:
        error = failure.error
        out.print(Text.assemble(("FAILED ", "bold red"), f"{failure.stage} [{failure.param_set}]: ",
                                error.message if error else ""), soft_wrap=True)
        if error and error.traceback:
            out.print(Text(_frames(error.traceback, error.type), style="dim"))
        if failure.log_path:
            out.print(Text(f"  its log: {failure.log_path}"), soft_wrap=True)
    if result.status == "interrupted":
        out.print("[magenta]Interrupted.[/] Finished stages are stored. Resume with:")
        out.print(f"  [bold]{escape(command)}[/]", soft_wrap=True)
    elif not result.ok:
        out.print("Finished stages are stored. Fix the failure, then resume with:")
        out.print(f"  [bold]{escape(command)}[/]", soft_wrap=True)


def _frames(traceback: str, kind: str) -> str:
    """A traceback without its closing ``Type: message`` lines: the FAILED line above has the message."""
    text = traceback.rstrip()
    lines = text.splitlines()
    last = max((i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")), default=0)
    for index in range(len(lines) - 1, last, -1):  # in the last traceback (a map keeps one per distinct failure)
        head = lines[index].split(":", 1)[0]
        if not lines[index].startswith(" ") and (head == kind or head.endswith("." + kind)):
            return "\n".join(lines[:index])
    return text


def plan(session: Session, the_plan: Plan, *, as_json: bool) -> None:
    """Print a plan: one line per node with its action and reasons."""
    decisions = list(the_plan.decisions.values())
    if as_json:
        click.echo(json.dumps([{"stage": d.stage, "param_set": d.param_set, "action": d.action.value,
                                "key": d.key, "reasons": list(d.reasons)} for d in decisions], indent=1))
        return
    stage_width, set_width = column_widths(session)
    for decision in decisions:
        if len(decisions) > DETAIL_LIMIT and decision.action is Action.CACHED:
            continue
        reasons = "; ".join(decision.reasons)
        out.print(Text.assemble((f"  {decision.action.value:<9}", STYLE[decision.action]),
                                (f"{decision.stage:<{stage_width}}  ", "bold"),
                                f"{decision.param_set:<{set_width}}  ", (reasons, "dim")))
    counts = ", ".join(f"{the_plan.count(a)} {a.value.lower()}" for a in Action)
    out.print(f"{len(decisions)} nodes: {counts}")


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


def cache_listing(store: Store, *, as_json: bool) -> None:
    """Print every stored artifact with its stage, param set, size and age."""
    rows: list[dict[str, Any]] = []
    now = time.time()
    for record in store.records():
        for artifact in record.outputs.values():
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
                                                _size(r["size"]), _age(r["age_seconds"]), r["hash"][:10])))
    out.print(table)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


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
