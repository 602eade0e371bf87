"""The dashboard's charts: inline SVG drawn on the server from the per-minute counters.

No script and no chart library (nothing from a CDN): each chart is an ``<svg>``
element with one polyline per series over the last 24 hours, in buckets of
:data:`BUCKET_MINUTES`, with its maximum and time marks as text. Three charts per
component: updates applied, failed and discarded; lag (mean enqueue -> commit time);
backlog (updates left waiting after a commit: mean and max).

Tool; uses tools (series).
"""

from __future__ import annotations

from collections.abc import Sequence

from motion.tools.board_state import esc
from motion.tools.series import OUTCOMES, Minute

#: minutes summed into one point of a chart
BUCKET_MINUTES = 10
WIDTH, HEIGHT, PAD = 720, 120, 28
COLOURS = {
    "applied": "#2f7d32",
    "failed": "#c62828",
    "discarded": "#9e7b00",
    "mean": "#1f5fa8",
    "max": "#7a3fb0",
}


def _buckets(minutes: Sequence[Minute]) -> list[list[Minute]]:
    return [list(minutes[i : i + BUCKET_MINUTES]) for i in range(0, len(minutes), BUCKET_MINUTES)]


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.2f}"


def chart(title: str, unit: str, series: dict[str, list[float]], chart_id: str) -> str:
    """One SVG line chart: ``series`` maps a name to its points (oldest first)."""
    peak = max((v for points in series.values() for v in points), default=0.0)
    top = peak or 1.0
    count = max((len(p) for p in series.values()), default=1)
    step = (WIDTH - 2 * PAD) / max(count - 1, 1)
    lines = []
    for name, points in series.items():
        xy = " ".join(
            f"{PAD + i * step:.1f},{HEIGHT - PAD - (v / top) * (HEIGHT - 2 * PAD):.1f}"
            for i, v in enumerate(points)
        )
        total = sum(points)
        lines.append(
            f'<polyline data-series="{esc(name)}" data-total="{total:g}" fill="none" '
            f'stroke="{COLOURS.get(name, "#444")}" stroke-width="1.5" points="{xy}">'
            f"<title>{esc(name)}</title></polyline>"
        )
    legend = " ".join(f'<tspan fill="{COLOURS.get(n, "#444")}">■ {esc(n)}</tspan>' for n in series)
    base = HEIGHT - PAD
    return (
        f'<figure class="chart" id="{esc(chart_id)}"><figcaption>{esc(title)}</figcaption>'
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{esc(title)}">'
        f'<rect x="{PAD}" y="{PAD}" width="{WIDTH - 2 * PAD}" height="{HEIGHT - 2 * PAD}" '
        f'fill="#fff" stroke="#d8dce3"/>'
        f'<text x="{PAD}" y="{PAD - 8}" font-size="11">max {_fmt(peak)} {esc(unit)}</text>'
        f'<text x="{WIDTH - PAD}" y="{PAD - 8}" font-size="11" text-anchor="end">{legend}</text>'
        f'<text x="{PAD}" y="{base + 16}" font-size="11">24 h ago</text>'
        f'<text x="{WIDTH / 2}" y="{base + 16}" font-size="11" text-anchor="middle">12 h</text>'
        f'<text x="{WIDTH - PAD}" y="{base + 16}" font-size="11" text-anchor="end">now</text>'
        + "".join(lines)
        + "</svg></figure>"
    )


def component_charts(component: str, minutes: Sequence[Minute]) -> str:
    """The three charts of ``component`` over ``minutes`` (oldest first)."""
    buckets = _buckets(minutes)
    outcomes = {o: [float(sum(m.count(o) for m in b)) for b in buckets] for o in OUTCOMES}

    def mean(total: str, count: str) -> list[float]:
        out = []
        for b in buckets:
            n = sum(getattr(m, count) for m in b)
            out.append(sum(getattr(m, total) for m in b) / n if n else 0.0)
        return out

    lag = {"mean": mean("lag_ms", "lag_n")}
    backlog = {
        "mean": mean("backlog", "backlog_n"),
        "max": [float(max((m.backlog_max for m in b), default=0)) for b in buckets],
    }
    every = f"per {BUCKET_MINUTES} min"
    return (
        f'<section id="charts"><h2>{esc(component)}: the last 24 hours</h2>'
        + chart(f"Updates {every}", "updates", outcomes, "chart-updates")
        + chart("Lag: enqueue to commit (mean)", "ms", lag, "chart-lag")
        + chart("Backlog left after each commit", "updates", backlog, "chart-backlog")
        + "</section>"
    )
