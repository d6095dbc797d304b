"""What `experiment run` shows, as data and as plain text: no rich here.

A terminal gets this content styled by rich (:mod:`.render`). A log file or a pipe gets the plain
text written here, so a run whose output goes to a log never imports rich (about 40 ms a run).
Every piece is a list of ``(text, style)`` cells: the style is a rich style name, which plain text
drops.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from ..engine.dag import ALL
from ..engine.outcomes import RunObserver, RunResult, RunStatus, Status
from ..engine.planner import Action

if TYPE_CHECKING:
    from ..engine.dag import Dag
    from ..engine.outcomes import NodeOutcome

__all__ = ["Grid", "StatusLines", "failure_lines", "grid_text", "result_json", "resume_command",
           "summary", "summary_grid", "terminal"]

Cell = tuple[str, str]  # (text, rich style)

STYLE = {
    Status.RAN: "green", Status.CACHED: "cyan", Status.FAILED: "bold red",
    Status.SKIPPED: "yellow", Status.INTERRUPTED: "magenta", Status.SHARDED: "blue", Status.PRUNED: "cyan",
    Status.DETACHED: "blue",
    Action.RUN: "green", Action.CACHED: "cyan", Action.MAY_RUN: "yellow",
}
DETAIL_LIMIT = 60  # above this many nodes, list only what ran or failed
SUMMARY_ROWS = 25  # stages listed in the end-of-run table (the slowest ones)
MATRIX_SETS = 8  # up to this many param sets, the table is stage x param set


def terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal, as rich decides it: ``TTY_COMPATIBLE=0/1``, then a non-empty
    ``FORCE_COLOR`` (https://force-color.org), then ``isatty()``."""
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = os.environ.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-like stream
        return False


def console(stderr: bool = False) -> Any:
    """A rich console for stdout (or stderr): on a terminal, as wide as it is; elsewhere (a file, a pipe,
    SLURM, CI) so wide that nothing wraps, so lines and hashes stay whole for grep and other tools."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if terminal(stream) else UNWRAPPED)


UNWRAPPED = 100_000  # columns of a console that is not a terminal: lines are never wrapped


def width() -> int:
    """The columns to fit the summary in, as rich measures them: ``COLUMNS``, else the first of stdin,
    stdout and stderr that is a terminal, else 80."""
    with contextlib.suppress(KeyError, ValueError):
        return int(os.environ["COLUMNS"])
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            return os.get_terminal_size(fd).columns
    return 80


# -- status lines ---------------------------------------------------------------------------------------


def column_widths(dag: Dag) -> tuple[int, int]:
    """Widths of the stage and param-set columns."""
    nodes = dag.nodes.values()
    stage = max((len(n.stage.name) for n in nodes), default=8)
    param_set = max((len(n.param_set) for n in nodes), default=8)
    return min(stage, 30), min(param_set, 40)


def status_parts(outcome: NodeOutcome, widths: tuple[int, int] = (20, 24)) -> list[Cell]:
    """``  RAN         split      baseline      1.2s  3f9a1c2e``"""
    status = outcome.status
    seconds = f"{outcome.seconds:6.1f}s" if status in (Status.RAN, Status.FAILED) else "       "
    return [
        (f"  {status.value.upper():<12}", STYLE[status]),
        (f"{outcome.stage:<{widths[0]}}  ", "bold"),
        (f"{outcome.param_set:<{widths[1]}}  ", ""),
        (seconds, "dim"),
        (f"  {(outcome.key or '')[:8]}", "dim"),
        *([(f"  GPU {outcome.extras['gpus']}", "cyan")] if (outcome.extras or {}).get("gpus") else []),
    ]


class StatusLines(RunObserver):
    """A fixed-width status line per finished node on stderr: every node of a small DAG, else what ran or failed."""

    def __init__(self, dag: Dag) -> None:
        self.widths = column_widths(dag)
        self.total = len(dag)
        self.verbose_nodes = self.total <= DETAIL_LIMIT
        self.done = 0
        self.nodes = dag.nodes
        self.waited: set[str] = set()  # nodes whose wait for resources was shown

    def __enter__(self) -> StatusLines:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def nodes_added(self, dag: Dag) -> None:
        self.total += len(dag)
        self.nodes = {**self.nodes, **dag.nodes}

    def resources(self, holding: Mapping[str, str], waiting: Sequence[str]) -> None:
        """A line when a node starts waiting for GPUs, cores or memory that running nodes hold."""
        for nid in waiting:
            if nid in self.waited:
                continue
            self.waited.add(nid)
            node = self.nodes[nid]
            shown = [f"{self.nodes[n].stage.name} [{self.nodes[n].param_set}] GPU {g}" for n, g in holding.items()]
            held = ", ".join(shown[:4]) + (f" and {len(shown) - 4} more" if len(shown) > 4 else "")
            self.write([("  WAITING     ", "yellow"), (f"{node.stage.name:<{self.widths[0]}}  ", "bold"),
                        (f"{node.param_set:<{self.widths[1]}}  ", ""),
                        (f"for resources{f' (held: {held})' if held else ''}", "dim")])

    def node_finished(self, outcome: NodeOutcome) -> None:
        self.done += 1
        if self.verbose_nodes or outcome.status in (Status.RAN, Status.FAILED, Status.INTERRUPTED):
            self.write(status_parts(outcome, self.widths))

    def write(self, parts: list[Cell]) -> None:
        """Print one status line."""
        sys.stderr.write("".join(text for text, _ in parts) + "\n")


# -- the end-of-run summary -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """A table as data: a header, rows of styled cells, which columns align right."""

    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    right: tuple[bool, ...]


def summary_head(result: RunResult) -> list[Cell]:
    """``run 20261201-...: succeeded in 1.2s``"""
    return [(f"run {result.run_id}", "bold"), (": ", ""), (result.status, "green" if result.ok else "red"),
            (f" in {result.seconds:.1f}s", "")]


def summary_grid(result: RunResult, width: int) -> Grid:
    """Stage x param set when the sets are few and fit ``width`` columns, else counts per stage."""
    per_stage: dict[str, Counter[Status]] = defaultdict(Counter)
    seconds: dict[str, float] = defaultdict(float)
    for outcome in result.outcomes:
        per_stage[outcome.stage][outcome.status] += 1
        seconds[outcome.stage] += outcome.seconds
    sets = list(dict.fromkeys(o.param_set for o in result.outcomes))
    if 1 < len(sets) <= MATRIX_SETS and len(per_stage) <= SUMMARY_ROWS and _fits(list(per_stage), sets, width):
        return _matrix(result, list(per_stage), sets)
    return _counts(per_stage, seconds)


def set_label(name: str) -> str:
    """A set's column header: what its name varies (``lr=0.01,hidden=32``), ``all sets`` for aggregates."""
    if name == ALL:
        return "all sets"
    return name[name.index("[") + 1 : -1] if name.endswith("]") and "[" in name else name


def _fits(stages: list[str], sets: list[str], width: int) -> bool:
    """Whether the stage x set table shows every name whole in ``width`` columns."""
    widths = [max(map(len, stages))] + [max(len(set_label(name)), len("cached 00.0s")) for name in sets]
    return sum(widths) + 3 * len(widths) + 1 <= width


def _matrix(result: RunResult, stages: list[str], sets: list[str]) -> Grid:
    cells = {(o.stage, o.param_set): o for o in result.outcomes}
    rows = []
    for stage in stages:
        row: list[Cell] = [(stage, "bold")]
        for name in sets:
            outcome = cells.get((stage, name))
            if outcome is None:
                row.append(("", ""))
                continue
            ran = outcome.status in (Status.RAN, Status.FAILED)
            row.append((outcome.status.value + (f" {outcome.seconds:.1f}s" if ran else ""), STYLE[outcome.status]))
        rows.append(tuple(row))
    return Grid(("stage", *map(set_label, sets)), tuple(rows), (False,) * (len(sets) + 1))


def _counts(per_stage: dict[str, Counter[Status]], seconds: dict[str, float]) -> Grid:
    shown = [s for s in Status if any(c[s] for c in per_stage.values())]
    ordered = list(per_stage)
    if len(ordered) > SUMMARY_ROWS:  # the slowest stages; the rest in one line
        ordered = sorted(ordered, key=lambda name: -seconds[name])[:SUMMARY_ROWS]
    rows = []
    for stage in ordered:
        counts = per_stage[stage]
        rows.append(((stage, "bold"), *[(str(counts[s] or ""), STYLE[s]) for s in shown],
                     (f"{seconds[stage]:.1f}", "")))
    if len(per_stage) > len(ordered):
        rest = [s for s in per_stage if s not in ordered]
        totals = Counter[Status]()
        for name in rest:
            totals.update(per_stage[name])
        rows.append(((f"... {len(rest)} more stages", "dim"), *[(str(totals[s] or ""), STYLE[s]) for s in shown],
                     (f"{sum(seconds[n] for n in rest):.1f}", "")))
    return Grid(("stage", *(s.value for s in shown), "seconds"), tuple(rows), (False, *[True] * (len(shown) + 1)))


def grid_text(grid: Grid) -> str:
    """The table as aligned columns under a dashed rule."""
    lines = [grid.header, *[tuple(text for text, _ in row) for row in grid.rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(grid.header))]
    rule = tuple("-" * w for w in widths)
    out = []
    for line in (lines[0], rule, *lines[1:]):
        cells = [c.rjust(w) if right else c.ljust(w) for c, w, right in zip(line, widths, grid.right)]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def failure_lines(result: RunResult, command: str) -> list[list[Cell]]:
    """Each failure with its traceback and log, then how to resume."""
    lines: list[list[Cell]] = []
    for failure in result.failures:
        error = failure.error
        lines.append([("FAILED ", "bold red"), (f"{failure.stage} [{failure.param_set}]: ", ""),
                      (error.message if error else "", "")])
        if error and error.traceback:
            lines.append([(_frames(error.traceback, error.type), "dim")])
        if failure.log_path:
            lines.append([(f"  its log: {failure.log_path}", "")])
    if result.status is RunStatus.INTERRUPTED:
        lines += [[("Interrupted.", "magenta"), (" Finished stages are stored. Resume with:", "")],
                  [("  ", ""), (command, "bold")]]
    elif result.status is RunStatus.DETACHED:
        submitted = result.count(Status.DETACHED)
        lines += [[("Detached.", "blue"), (f" {submitted} job{'s' if submitted != 1 else ''} submitted. Follow "
                                           "them with:", "")],
                  [("  ", ""), (f"experiment status {result.run_id}", "bold")],
                  [("Collect the results and go on (re-attaching to the jobs, not submitting them again) with:", "")],
                  [("  ", ""), (command, "bold")]]
    elif not result.ok:
        lines += [[("Finished stages are stored. Fix the failure, then resume with:", "")],
                  [("  ", ""), (command, "bold")]]
    return lines


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


def summary(result: RunResult, command: str) -> None:
    """Print the end-of-run summary as plain text on stdout."""
    grid = summary_grid(result, width())
    parts = [summary_head(result), [(grid_text(grid), "")], *failure_lines(result, command)]
    sys.stdout.write("".join("".join(text for text, _ in line) + "\n" for line in parts))


# -- --json and the resume command ----------------------------------------------------------------------


def resume_command(command: Any, params: dict[str, Any], skip: tuple[str, ...] = ("force", "dry_run")) -> str:
    """The command that resumes (reruns) this run: the same arguments and options, without ``skip``.

    Args:
        command: The click command that ran.
        params: Its parsed parameters (``click.Context.params``).
        skip: Parameters a rerun must not repeat (a forced stage that finished is now cached).
    """
    words = ["experiment", command.name]
    options: list[str] = []
    for param in command.params:
        value = params.get(param.name)
        if param.name in skip or value is None or value is False or value in ((), "") or value == param.default:
            continue
        if param.param_type_name == "argument":
            words += [str(v) for v in value]
            continue
        flag = max(param.opts, key=len)
        if getattr(param, "is_flag", False):
            options.append(flag)
            continue
        for item in value if getattr(param, "multiple", False) else (value,):
            options += [flag, "/".join(map(str, item)) if isinstance(item, tuple) else str(item)]
    return shlex.join(words + options)


def result_json(result: RunResult) -> dict[str, Any]:
    """The --json summary of a run."""
    return {
        "run_id": result.run_id,
        "status": result.status.value,
        "seconds": round(result.seconds, 3),
        "nodes": [
            {
                "stage": o.stage,
                "param_set": o.param_set,
                "status": o.status.value,
                "key": o.key,
                "seconds": round(o.seconds, 3),
                "reasons": list(o.reasons),
                "outputs": {name: a.hash for name, a in o.outputs.items()},
                "error": None if o.error is None else {"kind": o.error.kind, "message": o.error.message,
                                                       "type": o.error.type, "traceback": o.error.traceback},
            }
            for o in result.outcomes
        ],
    }
