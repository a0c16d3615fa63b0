"""Report charts as inline SVG: no plotting library, no CDN, crisp on screen and on paper."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

BAR = "#1f5fa8"
BAR_PARTIAL = "#8fb3dd"
WEEKEND = "#d9822b"
GRID = "#d8dde3"
INK = "#2d3748"
MUTED = "#718096"
FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"

WIDTH = 720
HEAT_LEVELS = 16


def _nice_step(top: float, ticks: int = 4) -> float:
    if top <= 0:
        return 1.0
    raw = top / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return float(m * mag)
    return float(10 * mag)


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 10 or v == 0 else f"{v:,.1f}".rstrip("0").rstrip(".")


def _svg(height: int, body: list[str], title: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {WIDTH} {height}' "
        f"width='100%' role='img' aria-label='{escape(title)}' {FONT} font-size='11'>"
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _y_axis(body: list[str], top: float, x0: int, x1: int, y0: int, y1: int, unit: str) -> float:
    """Grid lines and labels; returns the axis maximum."""
    step = _nice_step(top)
    y_max = step * max(1, math.ceil(top / step)) if top > 0 else step
    v = 0.0
    while v <= y_max + 1e-9:
        y = y1 - (y1 - y0) * v / y_max
        body.append(f"<line x1='{x0}' y1='{y:.1f}' x2='{x1}' y2='{y:.1f}' stroke='{GRID}'/>")
        body.append(
            f"<text x='{x0 - 6}' y='{y + 4:.1f}' text-anchor='end' fill='{MUTED}'>{_fmt(v)}</text>"
        )
        v += step
    body.append(
        f"<text x='{x0 - 6}' y='{y0 - 10}' text-anchor='end' fill='{MUTED}'>{escape(unit)}</text>"
    )
    return y_max


def daily_chart(daily: Sequence[dict[str, Any]]) -> str:
    """Energy per day; days without data are hatched and marked, never drawn as zero."""
    height, x0, x1, y0, y1 = 230, 56, WIDTH - 10, 24, 190
    body = [
        "<defs><pattern id='nodata' width='6' height='6' patternUnits='userSpaceOnUse' "
        "patternTransform='rotate(45)'><line x1='0' y1='0' x2='0' y2='6' stroke='#b0b7c0' "
        "stroke-width='2'/></pattern></defs>"
    ]
    values = [d["energy_kwh"] or 0.0 for d in daily]
    y_max = _y_axis(body, max(values, default=0.0), x0, x1, y0, y1, "kWh")
    n = max(1, len(daily))
    slot = (x1 - x0) / n
    every = 1 if n <= 31 else 7
    for i, d in enumerate(daily):
        x = x0 + i * slot + slot * 0.12
        w = slot * 0.76
        if d["status"] in ("missing",):
            body.append(
                f"<rect x='{x:.1f}' y='{y0}' width='{w:.1f}' height='{y1 - y0}' "
                f"fill='url(#nodata)'><title>{d['date']}: no data</title></rect>"
            )
        elif d["energy_kwh"] is not None:
            h = (y1 - y0) * d["energy_kwh"] / y_max
            colour = BAR if d["status"] == "complete" else BAR_PARTIAL
            body.append(
                f"<rect x='{x:.1f}' y='{y1 - h:.1f}' width='{w:.1f}' height='{h:.1f}' "
                f"fill='{colour}'><title>{d['date']}: {d['energy_kwh']} kWh</title></rect>"
            )
        if i % every == 0:
            body.append(
                f"<text x='{x + w / 2:.1f}' y='{y1 + 14}' text-anchor='middle' fill='{MUTED}'>"
                f"{d['date'][8:10]}</text>"
            )
    legend_y = height - 8
    body.append(
        f"<rect x='{x0}' y='{legend_y - 9}' width='10' height='10' fill='{BAR}'/>"
        f"<text x='{x0 + 14}' y='{legend_y}' fill='{INK}'>complete</text>"
        f"<rect x='{x0 + 84}' y='{legend_y - 9}' width='10' height='10' fill='{BAR_PARTIAL}'/>"
        f"<text x='{x0 + 98}' y='{legend_y}' fill='{INK}'>partial data</text>"
        f"<rect x='{x0 + 188}' y='{legend_y - 9}' width='10' height='10' fill='url(#nodata)'/>"
        f"<text x='{x0 + 202}' y='{legend_y}' fill='{INK}'>no data</text>"
    )
    return _svg(height, body, "Energy per day")


def profile_chart(weekday_kw: Sequence[float | None], weekend_kw: Sequence[float | None]) -> str:
    """Average power by hour of day, working days against weekends."""
    height, x0, x1, y0, y1 = 210, 56, WIDTH - 10, 24, 172
    body: list[str] = []
    top = max((v for v in (*weekday_kw, *weekend_kw) if v is not None), default=0.0)
    y_max = _y_axis(body, top, x0, x1, y0, y1, "kW")
    step = (x1 - x0) / 24
    for h in range(0, 24, 2):
        body.append(
            f"<text x='{x0 + (h + 0.5) * step:.1f}' y='{y1 + 14}' text-anchor='middle' "
            f"fill='{MUTED}'>{h:02d}h</text>"
        )
    for series, colour in ((weekday_kw, BAR), (weekend_kw, WEEKEND)):
        runs: list[list[str]] = [[]]
        for h, v in enumerate(series):
            if v is None:
                runs.append([])
                continue
            x = x0 + (h + 0.5) * step
            y = y1 - (y1 - y0) * v / y_max
            runs[-1].append(f"{x:.1f},{y:.1f}")
        for pts in runs:
            if len(pts) == 1:
                cx, cy = pts[0].split(",")
                body.append(f"<circle cx='{cx}' cy='{cy}' r='2.5' fill='{colour}'/>")
            elif pts:
                body.append(
                    f"<polyline points='{' '.join(pts)}' fill='none' stroke='{colour}' "
                    "stroke-width='2.5' stroke-linejoin='round'/>"
                )
    ly = height - 8
    body.append(
        f"<rect x='{x0}' y='{ly - 9}' width='10' height='10' fill='{BAR}'/>"
        f"<text x='{x0 + 14}' y='{ly}' fill='{INK}'>Monday–Friday</text>"
        f"<rect x='{x0 + 120}' y='{ly - 9}' width='10' height='10' fill='{WEEKEND}'/>"
        f"<text x='{x0 + 134}' y='{ly}' fill='{INK}'>Saturday–Sunday</text>"
    )
    return _svg(height, body, "Average load profile")


def _blue(t: float) -> str:
    """White (0) to dark blue (1)."""
    t = min(1.0, max(0.0, t))
    lo, hi = (247, 251, 255), (8, 48, 107)
    r, g, b = (round(a + (z - a) * t) for a, z in zip(lo, hi, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap_chart(heat: Sequence[Sequence[float | None]], dates: Sequence[str]) -> str:
    """Average power per day (rows) and hour of day (columns); empty cells had no data."""
    n = max(1, len(heat))
    row_h = max(3.0, min(14.0, 420 / n))
    x0, y0 = 64, 18
    cell_w = (WIDTH - x0 - 10) / 24
    height = int(y0 + n * row_h + 20)
    body: list[str] = []
    top = max((v for row in heat for v in row if v is not None), default=0.0) or 1.0
    every = 1 if n <= 31 else 7
    for d, row in enumerate(heat):
        y = y0 + d * row_h
        # Colours in HEAT_LEVELS steps, and neighbours of one colour drawn as one rectangle:
        # a month is ~150 shapes instead of 744 (the PDF renderer draws each one).
        fills = [
            None if v is None else _blue(0.08 + 0.92 * round(v / top * HEAT_LEVELS) / HEAT_LEVELS)
            for v in row
        ]
        h = 0
        while h < len(fills):
            end = h + 1
            while end < len(fills) and fills[end] == fills[h]:
                end += 1
            fill = fills[h] or "#ffffff' stroke='#eef0f3"
            width = (end - h) * cell_w + 0.3
            body.append(
                f"<rect x='{x0 + h * cell_w:.1f}' y='{y:.1f}' width='{width:.1f}' "
                f"height='{row_h + 0.3:.1f}' fill='{fill}'/>"
            )
            h = end
        if d % every == 0:
            body.append(
                f"<text x='{x0 - 6}' y='{y + row_h / 2 + 4:.1f}' text-anchor='end' "
                f"fill='{MUTED}' font-size='9'>{escape(dates[d][5:])}</text>"
            )
    for h in range(0, 24, 3):
        body.append(
            f"<text x='{x0 + (h + 0.5) * cell_w:.1f}' y='{y0 - 5}' text-anchor='middle' "
            f"fill='{MUTED}' font-size='9'>{h:02d}h</text>"
        )
    body.append(
        f"<text x='{x0}' y='{height - 4}' fill='{MUTED}' font-size='9'>darker = more power "
        f"(max {_fmt(top)} kW); blank = no data</text>"
    )
    return _svg(height, body, "Power by day and hour")


def breakdown_chart(items: Sequence[dict[str, Any]], limit: int = 10) -> str:
    """Horizontal bars: energy of each area / device / load, largest first."""
    rows = [i for i in items if (i.get("energy_kwh") or 0) > 0][:limit]
    bar_h, gap, x0 = 16, 6, 200
    height = max(40, len(rows) * (bar_h + gap) + 10)
    body: list[str] = []
    top = max((r["energy_kwh"] for r in rows), default=1.0) or 1.0
    span = WIDTH - x0 - 150
    for i, r in enumerate(rows):
        y = 4 + i * (bar_h + gap)
        w = span * r["energy_kwh"] / top
        name = str(r.get("name", ""))
        name = name if len(name) <= 30 else name[:29] + "…"
        share = f" · {r['share'] * 100:.0f} %" if r.get("share") is not None else ""
        body.append(
            f"<text x='{x0 - 8}' y='{y + 12}' text-anchor='end' fill='{INK}'>{escape(name)}</text>"
            f"<rect x='{x0}' y='{y}' width='{max(w, 1):.1f}' height='{bar_h}' fill='{BAR}'/>"
            f"<text x='{x0 + w + 6:.1f}' y='{y + 12}' fill='{MUTED}'>"
            f"{_fmt(r['energy_kwh'])} kWh{share}</text>"
        )
    if not rows:
        body.append(f"<text x='10' y='24' fill='{MUTED}'>no energy recorded</text>")
    return _svg(height, body, "Breakdown")
