"""How the run-record commands print: runs, one run, explanations, lineage trees, diffs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ..records.provenance import Explanation, Lineage
from ..records.report import flatten
from ..records.values import ExecutionRecord, RunRecord
from ..units import byte_size, local_time
from .plain import console, set_label

out = console()
STATUS_STYLE = {"succeeded": "green", "ran": "green", "cached": "cyan", "failed": "bold red", "skipped": "yellow",
                "interrupted": "magenta", "running": "bold yellow", "sharded": "blue"}


def status(text: str) -> Text:
    """A status word in its colour."""
    return Text(text, style=STATUS_STYLE.get(text, ""))


def run_json(run: RunRecord, executions: Sequence[ExecutionRecord] | None = None) -> dict[str, Any]:
    """A run (and optionally its executions) as JSON-ready data."""
    data: dict[str, Any] = {
        "id": run.id, "title": run.title, "description": run.description, "status": run.status,
        "started": run.started, "ended": run.ended, "seconds": run.seconds, "command": run.command,
        "host": run.host, "user": run.user, "pid": run.pid, "project": run.project,
        "counts": dict(run.counts), "metrics": dict(run.metrics), "report": run.report,
        "tags": list(run.tags), "notes": [dict(n) for n in run.notes], "params": run_params(run),
    }
    if executions is not None:
        data.update(experiment=dict(run.experiment), environment=dict(run.environment), git=dict(run.git),
                    snapshot=dict(run.snapshot), executions=[execution_json(e) for e in executions])
    return data


def execution_json(e: ExecutionRecord) -> dict[str, Any]:
    """One stage execution as JSON-ready data."""
    return {
        "node": e.node, "stage": e.stage, "param_set": e.param_set, "status": e.status, "key": e.key,
        "started": e.started, "ended": e.ended, "seconds": e.seconds, "peak_rss": e.peak_rss,
        "reasons": list(e.reasons), "log_path": e.log_path, "error": e.error, "parts": e.parts,
        "outputs": {n: {"hash": a.hash, "object": a.object, "size": a.size, "cacher": a.cacher}
                    for n, a in e.outputs.items()},
        "extras": dict(e.extras),
    }


def runs_table(runs: Sequence[RunRecord], where: str) -> None:
    """The `experiment runs` listing."""
    if not runs:
        out.print(f"No runs recorded in {escape(where)} yet. Run: experiment run NAME")
        return
    table = Table(title=f"{len(runs)} runs in {where}", title_justify="left")
    for column in ("run", "started", "status", "seconds", "ran", "cached", "failed", "params", "title"):
        right = column in ("seconds", "ran", "cached", "failed")
        table.add_column(column, justify="right" if right else "left", no_wrap=column in ("run", "started"),
                         overflow="ellipsis" if column in ("params", "title") else "fold",
                         max_width=40 if column == "title" else None)
    for run in runs:  # a run id is never cut (it is what the other commands take); a long title is
        seconds = f"{run.seconds:.1f}" if run.seconds is not None else "-"
        table.add_row(run.id, local_time(run.started), status(run.status), seconds, str(run.counts.get("ran", "")),
                      str(run.counts.get("cached", "")), str(run.counts.get("failed", "")),
                      Text(run_params(run)),
                      Text(("[" + ", ".join(run.tags) + "] " if run.tags else "") + run.title, overflow="ellipsis",
                           no_wrap=True))
    out.print(table)


def run_params(run: RunRecord) -> str:
    """The param files of a run and its ``--set`` overrides: ``sweep --set lr=0.1``."""
    names = [str(n) for n in run.experiment.get("names", ())]
    overrides = [f"--set {o}" for o in run.experiment.get("overrides", ())]
    return " ".join([*names, *overrides])


def params_table(sets: Mapping[str, Mapping[str, Any]]) -> Table:
    """Params by set; values that vary across sets in yellow with a star."""
    flat = {name: flatten(values) for name, values in sets.items()}
    table = Table(title="params", title_justify="left")
    table.add_column("param")
    for name in flat:  # headed by what each set varies (lr=0.01,hidden=32), as the run summary does
        table.add_column(Text(set_label(name)))
    for key in sorted({k for values in flat.values() for k in values}):
        cells = [repr(flat[name].get(key, "—")) for name in flat]
        varying = len(flat) > 1 and len(set(cells)) > 1
        table.add_row(Text(key + (" *" if varying else ""), style="bold yellow" if varying else ""),
                      *[Text(c) for c in cells])
    return table


def show(run: RunRecord, executions: Sequence[ExecutionRecord]) -> None:
    """The `experiment show` page."""
    out.print(Text.assemble(("run ", "bold"), (run.id, "bold"), "  ", status(run.status), "  ", run.title))
    took = f"{run.seconds:.1f}s" if run.seconds is not None else "(still running)"
    out.print(Text(f"  started {local_time(run.started)}, took {took}; {run.user}@{run.host} pid {run.pid}"))
    out.print(Text(f"  command: {run.command}"))
    if run.tags:
        out.print(Text(f"  tags: {', '.join(run.tags)}"))
    for entry in run.notes:
        out.print(Text(f"  note ({local_time(entry.get('time'))}): {entry.get('text', '')}"))
    git = run.git
    if git.get("commit"):
        out.print(f"  git {git['commit'][:12]} {escape(git.get('branch', ''))}"
                  + (" [yellow](uncommitted changes recorded)[/]" if git.get("dirty") else ""))
    packages = ", ".join(f"{k} {v}" for k, v in sorted(run.environment.get("packages", {}).items()))
    out.print(Text(f"  python {run.environment.get('python', '?')}; {packages}", style="dim"))
    out.print(f"  {len(run.snapshot)} source files snapshotted")
    if run.report:
        out.print(f"  report: {escape(run.report)}")
    out.print(params_table(run.param_sets))
    stages = Table(title="stages", title_justify="left")
    for column in ("stage", "param set", "status", "seconds", "peak memory", "key", "why"):
        stages.add_column(column, justify="right" if column in ("seconds", "peak memory") else "left")
    artifacts = Table(title="artifacts", title_justify="left")
    for column in ("stage", "param set", "artifact", "hash", "size", "cacher"):
        artifacts.add_column(column, justify="right" if column == "size" else "left")
    for e in executions:
        stages.add_row(Text(e.stage), Text(e.param_set), status(e.status), f"{e.seconds:.2f}",
                       byte_size(e.peak_rss) if e.peak_rss else "-", (e.key or "")[:10], Text("; ".join(e.reasons)))
        for name, a in e.outputs.items():
            artifacts.add_row(Text(e.stage), Text(e.param_set), Text(name), a.hash[:12], byte_size(a.size), Text(a.cacher))
    out.print(stages)
    if artifacts.row_count:
        out.print(artifacts)
    for e in executions:
        if e.status == "failed" and e.error:
            out.print(Text.assemble(("FAILED ", "bold red"), f"{e.stage} [{e.param_set}]: ",
                                    f"{e.error.get('message', '')}"), soft_wrap=True)
            if e.error.get("traceback"):
                out.print(Text(e.error["traceback"].rstrip(), style="dim"))
            out.print(Text(f"  log: {e.log_path}"))
        elif e.status in ("interrupted", "running"):
            out.print(Text.assemble((f"{e.status.upper()} ", "magenta"), f"{e.stage} [{e.param_set}]",
                                    f"  log: {e.log_path}"))


def explanations(items: Sequence[Explanation]) -> None:
    """The `experiment explain` answer."""
    for item in items:
        out.print(Text.assemble((f"{item.stage} [{item.param_set}]", "bold"), "  ", status(item.status),
                                f"  in run {item.run_id}"))
        out.print(Text(f"  {item.summary}"), soft_wrap=True)
        for change in item.changes:
            out.print(Text(f"    - {change}"))
        if item.recorded_reasons and list(item.recorded_reasons) != list(item.changes):
            out.print(Text(f"  at run time: {'; '.join(item.recorded_reasons)}", style="dim"))
        if item.undeclared_reads:
            out.print(Text(f"  read files its key does not cover: {', '.join(item.undeclared_reads)}", style="yellow"))
        for label in item.conservative:
            out.print(Text(f"  key is conservative: code: {label}; any edit of that module reruns it", style="yellow"))


def _lineage_label(node: Lineage, label: str = "") -> Text:
    head = f"{label}: " if label and label != node.artifact else ""
    text = Text.assemble((head, "dim"), (node.artifact, "bold"), f"  {node.hash[:12]}")
    if node.size:
        text.append(f"  {byte_size(node.size)} {node.cacher}", style="dim")
    if node.stage:
        text.append(f"  <- {node.stage} [{node.param_set}]", style="cyan")
        text.append(f"  run {node.run_id or '?'}", style="dim")
        if node.params:
            text.append("  " + ", ".join(f"{k}={v!r}" for k, v in sorted(node.params.items())))
    else:
        text.append("  (no recorded producer)", style="yellow")
    return text


def lineage(trees: Sequence[Lineage]) -> None:
    """The `experiment lineage` tree(s); an artifact met again is not expanded twice."""
    seen: set[str] = set()

    def grow(branch: Tree, node: Lineage) -> None:
        for label, sub in node.inputs:
            text = _lineage_label(sub, label)
            if sub.hash in seen and sub.inputs:
                text.append("  (see above)", style="dim")
                branch.add(text)
                continue
            seen.add(sub.hash)
            grow(branch.add(text), sub)

    for root in trees:
        seen.add(root.hash)
        tree = Tree(_lineage_label(root))
        grow(tree, root)
        out.print(tree)


def diff(data: Mapping[str, Any]) -> None:
    """The `experiment diff` sections."""
    a, b = data["a"], data["b"]
    out.print(Text.assemble(("A ", "bold"), f"{a['id']}  ", status(a["status"]), f"  {a['title']}"))
    out.print(Text.assemble(("B ", "bold"), f"{b['id']}  ", status(b["status"]), f"  {b['title']}"))
    for set_a, set_b in data["sets"].get("paired", ()):
        out.print(f"param set {escape(set_a)} (A) compared with {escape(set_b)} (B): the closest params")
    for side, label in (("only_a", "only in A"), ("only_b", "only in B")):
        if data["sets"][side]:
            out.print(f"param sets {label}: {escape(', '.join(data['sets'][side]))}")
        if data["stages"][side]:
            out.print(f"stages {label}: {escape(', '.join(data['stages'][side]))}")
    sections = [("params", ["set", "name", "a", "b"]), ("environment", ["name", "a", "b"]),
                ("artifacts", ["name", "a", "b"]), ("metrics", ["name", "a", "b"])]
    _section("params", data["params"], sections[0][1])
    out.print(Text("code", style="bold underline"))
    if not data["code"]:
        out.print("  no differences", style="dim")
    for entry in data["code"]:
        out.print(Text(f"  {entry['stage']}: {'; '.join(entry['changes'])}"))
    for name, columns in sections[1:]:
        _section(name, data[name], columns)


def _section(name: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    out.print(Text(name, style="bold underline"))
    if not rows:
        out.print("  no differences", style="dim")
        return
    table = Table(show_edge=False, box=None, padding=(0, 2))
    for column in columns:
        table.add_column(column.upper() if column in ("a", "b") else column)
    for row in rows:
        cells = [row.get(c) for c in columns]
        table.add_row(*[_short(c) for c in cells])  # Text: never parsed as markup
    out.print(table)


def _short(value: Any) -> Text:
    text = value if isinstance(value, str) else (f"{value:.6g}" if isinstance(value, float) else repr(value))
    if len(text) >= 32 and all(c in "0123456789abcdef" for c in text):  # a hash
        text = text[:12]
    return Text(text, overflow="fold")
