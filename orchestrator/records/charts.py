"""Small inline SVG charts for reports: one line per param set, or bars when each set has one value."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from .markup import esc

__all__ = ["PALETTE", "bar_chart", "metric_chart", "nice_ticks", "scatter_chart"]

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
WIDTH, HEIGHT = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 24, 34


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks: list[float] = []
    value = start
    while value <= high + step * 0.5 and len(ticks) < 50:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.4g}"


def _frame(title: str, y_low: float, y_high: float, plot_h: float) -> tuple[list[str], float, float]:
    ticks = nice_ticks(y_low, y_high)
    low, high = min(ticks[0], y_low), max(ticks[-1], y_high)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{esc(title)}">',
           f'<text x="{LEFT}" y="15" font-size="12" font-weight="600">{esc(title)}</text>']
    for tick in ticks:
        y = TOP + plot_h * (1 - (tick - low) / ((high - low) or 1))
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eceff1"/>'
                   f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#546e7a">'
                   f'{esc(_fmt(tick))}</text>')
    out.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#90a4ae"/>')
    return out, low, high


def _x_ticks(low: float, high: float, x_of: Callable[[float], float], y: float) -> list[str]:
    """The x axis's tick labels between ``low`` and ``high``, at ``x_of(tick)``, on the line ``y``."""
    return [f'<text x="{x_of(tick):.1f}" y="{y:.1f}" font-size="10" text-anchor="middle" fill="#546e7a">'
            f"{esc(_fmt(tick))}</text>" for tick in nice_ticks(low, high, 6) if low <= tick <= high]


def _bars(title: str, values: Mapping[str, float]) -> str:
    numbers = list(values.values())
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out, low, high = _frame(title, min(0.0, *numbers), max(0.0, *numbers), plot_h)
    slot = plot_w / max(1, len(values))
    zero = TOP + plot_h * (1 - (0 - low) / ((high - low) or 1))
    for index, (label, value) in enumerate(values.items()):
        y = TOP + plot_h * (1 - (value - low) / ((high - low) or 1))
        x = LEFT + index * slot + slot * 0.15
        colour = PALETTE[index % len(PALETTE)]
        out.append(f'<rect class="bar" x="{x:.1f}" y="{min(y, zero):.1f}" width="{slot * 0.7:.1f}" '
                   f'height="{abs(zero - y):.1f}" fill="{colour}"><title>{esc(label)}: {esc(_fmt(value))}</title></rect>'
                   f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - BOTTOM + 14}" font-size="10" text-anchor="middle">'
                   f'{esc(label if len(label) <= 24 else label[:23] + "…")}</text>')
    out.append("</svg>")
    return "".join(out)


def metric_chart(title: str, series: Mapping[str, Sequence[tuple[float, float]]]) -> str:
    """An SVG chart of ``series`` (label -> (step, value) points): lines, or bars when each has one point."""
    series = {label: [p for p in points if math.isfinite(p[1])] for label, points in series.items()}
    series = {label: points for label, points in series.items() if points}
    if not series:
        return ""
    if all(len(points) == 1 for points in series.values()):
        return _bars(title, {label: points[-1][1] for label, points in series.items()})
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points]
    x_low, x_high = min(xs), max(xs)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM - 14 * ((len(series) + 2) // 3)
    out, low, high = _frame(title, min(ys), max(ys), plot_h)

    def place(x: float, y: float) -> tuple[float, float]:
        return (LEFT + plot_w * (x - x_low) / ((x_high - x_low) or 1),
                TOP + plot_h * (1 - (y - low) / ((high - low) or 1)))

    out += _x_ticks(x_low, x_high, lambda tick: place(tick, low)[0], TOP + plot_h + 14)
    for index, (label, points) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        coords = " ".join("{:.1f},{:.1f}".format(*place(x, y)) for x, y in points)
        out.append(f'<polyline class="series" points="{coords}" fill="none" stroke="{colour}" stroke-width="1.8">'
                   f'<title>{esc(label)}</title></polyline>')
        lx = LEFT + (index % 3) * (plot_w / 3)
        ly = TOP + plot_h + 30 + 14 * (index // 3)
        out.append(f'<rect x="{lx:.1f}" y="{ly - 8:.1f}" width="10" height="3" fill="{colour}"/>'
                   f'<text x="{lx + 14:.1f}" y="{ly - 4:.1f}" font-size="10">'
                   f'{esc(label if len(label) <= 40 else label[:39] + "…")}</text>')
    out.append("</svg>")
    return "".join(out)


def scatter_chart(title: str, points: Sequence[tuple[float, float, str]], x_label: str, y_label: str) -> str:
    """An SVG scatter plot of (x, y, label) points, each labelled on hover; "" when there are none."""
    points = [p for p in points if math.isfinite(p[0]) and math.isfinite(p[1])]
    if not points:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_low, x_high = min(xs), max(xs)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM - 14
    out, low, high = _frame(title, min(ys), max(ys), plot_h)

    def place(x: float, y: float) -> tuple[float, float]:
        return (LEFT + plot_w * (x - x_low) / ((x_high - x_low) or 1),
                TOP + plot_h * (1 - (y - low) / ((high - low) or 1)))

    out += _x_ticks(x_low, x_high, lambda tick: place(tick, low)[0], TOP + plot_h + 14)
    out.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" font-size="11" text-anchor="middle">'
               f"{esc(x_label)}</text>")
    for index, (x, y, label) in enumerate(points):
        cx, cy = place(x, y)
        out.append(f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{PALETTE[index % len(PALETTE)]}">'
                   f"<title>{esc(label)}: {esc(x_label)} {esc(_fmt(x))}, {esc(y_label)} {esc(_fmt(y))}</title></circle>")
    out.append("</svg>")
    return "".join(out)


def bar_chart(title: str, values: Mapping[str, float]) -> str:
    """An SVG bar chart of one value per label."""
    return _bars(title, values)
