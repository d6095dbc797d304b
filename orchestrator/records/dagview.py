"""The DAG of a run as an SVG picture, coloured by each node's status.

Graphviz ``dot`` draws it when installed (and the graph is small enough for it to be
quick); otherwise a simple layered layout in pure Python does: layers by longest path
from the sources, nodes ordered within a layer by the mean position of their parents,
edges as curves from left to right. Large runs are drawn one box per stage.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from .markup import esc

logger = logging.getLogger(__name__)

__all__ = ["STATUS_COLOURS", "dag_svg"]

STATUS_COLOURS = {  # fill, stroke
    "ran": ("#c8e6c9", "#2e7d32"),
    "succeeded": ("#c8e6c9", "#2e7d32"),
    "cached": ("#bbdefb", "#1565c0"),
    "failed": ("#ffcdd2", "#c62828"),
    "skipped": ("#eeeeee", "#9e9e9e"),
    "interrupted": ("#f8bbd0", "#ad1457"),
    "running": ("#ffe0b2", "#ef6c00"),
    "sharded": ("#d1c4e9", "#4527a0"),
    "pruned": ("#b2ebf2", "#00838f"),
    "detached": ("#e1f5fe", "#0277bd"),
    "pending": ("#ffffff", "#bdbdbd"),
}
_SEVERITY = ("failed", "interrupted", "running", "skipped", "sharded", "pruned", "ran", "cached", "pending")
PER_NODE_LIMIT = 120  # above this many nodes, draw one box per stage
DRAW_LIMIT = 3000
DOT_LIMIT = 200
NODE_HEIGHT, ROW_GAP, LAYER_GAP = 38, 14, 56


class _Box(NamedTuple):
    id: str
    title: str
    subtitle: str
    status: str
    tooltip: str


def _boxes(nodes: Sequence[Sequence[str]], edges: Sequence[Sequence[str]], statuses: Mapping[str, str],
           seconds: Mapping[str, float]) -> tuple[list[_Box], list[tuple[str, str]]]:
    if len(nodes) <= PER_NODE_LIMIT:
        boxes = []
        for node_id, stage, param_set in nodes:
            status = statuses.get(node_id, "pending")
            tip = f"{stage} [{param_set}]: {status}" + (f", {seconds[node_id]:.2f}s" if seconds.get(node_id) else "")
            boxes.append(_Box(node_id, stage, param_set, status, tip))
        links = list(dict.fromkeys((e[0], e[1]) for e in edges))
        return boxes, links
    by_stage: dict[str, list[str]] = {}
    stage_of = {}
    for node_id, stage, _ in nodes:
        by_stage.setdefault(stage, []).append(statuses.get(node_id, "pending"))
        stage_of[node_id] = stage
    boxes = []
    for stage, found in by_stage.items():
        counts = {s: found.count(s) for s in _SEVERITY if s in found}
        worst = next(s for s in _SEVERITY if s in counts)
        summary = ", ".join(f"{n} {s}" for s, n in counts.items())
        boxes.append(_Box(stage, stage, summary, worst, f"{stage}: {summary}"))
    links = list(dict.fromkeys((stage_of[a], stage_of[b]) for a, b, *_ in edges if stage_of[a] != stage_of[b]))
    return boxes, links


def _width(box: _Box) -> int:
    return max(90, min(260, 7 * max(len(box.title), len(box.subtitle)) + 22))


def _clip(text: str, width: int) -> str:
    limit = max(4, (width - 16) // 7)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _python_svg(boxes: list[_Box], links: list[tuple[str, str]]) -> str:
    order = {b.id: i for i, b in enumerate(boxes)}
    parents: dict[str, list[str]] = {b.id: [] for b in boxes}
    for a, b in links:
        if a in order and b in order:
            parents[b].append(a)
    layer: dict[str, int] = {}
    for box in boxes:  # boxes come in a topological order
        layer[box.id] = 1 + max((layer.get(p, 0) for p in parents[box.id]), default=-1)
    layers: list[list[_Box]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    position: dict[str, float] = {}
    for box in boxes:
        layers[layer[box.id]].append(box)
    for members in layers:
        members.sort(key=lambda b: (sum(position.get(p, 0) for p in parents[b.id]) / max(1, len(parents[b.id])),
                                    order[b.id]))
        for index, box in enumerate(members):
            position[box.id] = index
    widths = [max((_width(b) for b in members), default=90) for members in layers]
    tallest = max((len(m) for m in layers), default=1)
    height = tallest * (NODE_HEIGHT + ROW_GAP) + ROW_GAP
    xy: dict[str, tuple[float, float, int]] = {}
    x = 10.0
    for members, width in zip(layers, widths):
        top = (height - len(members) * (NODE_HEIGHT + ROW_GAP) + ROW_GAP) / 2
        for index, box in enumerate(members):
            xy[box.id] = (x, top + index * (NODE_HEIGHT + ROW_GAP), width)
        x += width + LAYER_GAP
    total_width = int(x - LAYER_GAP + 10)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{total_width}" height="{int(height)}" '
           f'viewBox="0 0 {total_width} {int(height)}" role="img" aria-label="DAG of the run">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#78909c"/></marker></defs>']
    for a, b in links:
        if a not in xy or b not in xy:
            continue
        x1, y1, w1 = xy[a]
        x2, y2, _ = xy[b]
        sx, sy, ex, ey = x1 + w1, y1 + NODE_HEIGHT / 2, x2 - 2, y2 + NODE_HEIGHT / 2
        mid = (sx + ex) / 2
        out.append(f'<path class="edge" d="M{sx:.1f},{sy:.1f} C{mid:.1f},{sy:.1f} {mid:.1f},{ey:.1f} {ex:.1f},{ey:.1f}" '
                   'fill="none" stroke="#90a4ae" stroke-width="1.3" marker-end="url(#arrow)"/>')
    for box in boxes:
        bx, by, width = xy[box.id]
        fill, stroke = STATUS_COLOURS.get(box.status, STATUS_COLOURS["pending"])
        out.append(f'<g class="node status-{esc(box.status)}" data-node="{esc(box.id)}" data-status="{esc(box.status)}">'
                   f'<title>{esc(box.tooltip)}</title>'
                   f'<rect x="{bx:.1f}" y="{by:.1f}" width="{width}" height="{NODE_HEIGHT}" rx="6" '
                   f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
                   f'<text x="{bx + width / 2:.1f}" y="{by + 16:.1f}" text-anchor="middle" font-size="12" '
                   f'font-weight="600">{esc(_clip(box.title, width))}</text>'
                   f'<text x="{bx + width / 2:.1f}" y="{by + 30:.1f}" text-anchor="middle" font-size="10.5" '
                   f'fill="#455a64">{esc(_clip(box.subtitle, width))}</text></g>')
    out.append("</svg>")
    return "".join(out)


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _dot_svg(boxes: list[_Box], links: list[tuple[str, str]]) -> str | None:
    dot = shutil.which("dot")
    if dot is None:
        return None
    lines = ["digraph run {", "  rankdir=LR; bgcolor=transparent;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];']
    for box in boxes:
        fill, stroke = STATUS_COLOURS.get(box.status, STATUS_COLOURS["pending"])
        label = _dot_quote(box.title)[:-1] + "\\n" + _dot_quote(box.subtitle)[1:]
        lines.append(f"  {_dot_quote(box.id)} [label={label}, fillcolor={_dot_quote(fill)}, "
                     f"color={_dot_quote(stroke)}, tooltip={_dot_quote(box.tooltip)}, "
                     f"class={_dot_quote('node status-' + box.status)}];")
    lines += [f"  {_dot_quote(a)} -> {_dot_quote(b)} [color=\"#90a4ae\"];" for a, b in links]
    lines.append("}")
    import subprocess

    try:
        proc = subprocess.run([dot, "-Tsvg"], input="\n".join(lines), capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("graphviz failed (%s); using the built-in layout", exc)
        return None
    start = proc.stdout.find("<svg")
    if proc.returncode != 0 or start < 0:
        logger.debug("graphviz failed: %s", proc.stderr.strip())
        return None
    return proc.stdout[start:].replace("<svg ", '<svg class="dag" ', 1)


def dag_svg(dag: Mapping[str, Sequence[Sequence[str]]], statuses: Mapping[str, str],
            seconds: Mapping[str, float] | None = None, *, engine: str = "auto") -> str:
    """An SVG of the run's DAG (``dag`` as recorded: ``nodes`` and ``edges``); ``engine``: auto, dot or python."""
    nodes, edges = dag.get("nodes", ()), dag.get("edges", ())
    if not nodes:
        return '<p class="muted">No DAG recorded.</p>'
    boxes, links = _boxes(nodes, edges, statuses, seconds or {})
    if len(boxes) > DRAW_LIMIT:
        return f'<p class="muted">{len(boxes)} stages: too many to draw.</p>'
    if engine in ("auto", "dot") and len(boxes) <= DOT_LIMIT:
        svg = _dot_svg(boxes, links)
        if svg is not None:
            return svg
    return _python_svg(boxes, links)
