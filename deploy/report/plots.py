"""Small SVG charts for report.html: a heatmap, step/line charts with event markers, a bar chart.

Plain SVG text, no plotting dependency; every chart is a standalone ``.svg`` file a browser shows
as an image.

>>> svg = bar_chart(["a", "b"], [0.25, 0.5], title="t", y_label="y")
>>> svg.startswith("<svg") and svg.count("<rect") >= 2
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
W, H = 760, 320
LEFT, RIGHT, TOP, BOTTOM = 56, 150, 28, 40  # plot margins; the legend lives in the right one


@dataclass
class Series:
    name: str
    x: Sequence[float]
    y: Sequence[float]
    step: bool = False  # hold each value until the next point (a served version)
    dots: bool = False  # points only


@dataclass
class Marker:
    x: float
    label: str = ""
    color: str = "#bbbbbb"
    dashed: bool = False


@dataclass
class Frame:
    """Maps data coordinates into the plot area."""

    x0: float
    x1: float
    y0: float
    y1: float
    w: int = W
    h: int = H
    ticks: list[str] = field(default_factory=list)

    def px(self, x: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return LEFT + (x - self.x0) / span * (self.w - LEFT - RIGHT)

    def py(self, y: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.h - BOTTOM - (y - self.y0) / span * (self.h - TOP - BOTTOM)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi].

    >>> nice_ticks(0, 1)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    >>> nice_ticks(0, 37)
    [0.0, 10.0, 20.0, 30.0, 40.0]
    """
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    count = math.ceil((hi - start) / step - 1e-9)
    return [float(round(start + i * step, 10)) for i in range(count + 1)]


def _title_width(title: str) -> int:
    """Width a chart needs for its bold 13 px title (about 7.5 px per character)."""
    return LEFT + round(7.5 * len(title)) + 12


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def _svg(body: list[str], title: str, w: int = W, h: int = H) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        "<style>text{font-family:sans-serif;font-size:11px;fill:#333}"
        ".t{font-size:13px;font-weight:bold}.g{stroke:#e5e5e5}.a{stroke:#666}</style>"
        f'<rect width="{w}" height="{h}" fill="white"/>'
        f'<text class="t" x="{LEFT}" y="17">{escape(title)}</text>' + "".join(body) + "</svg>\n"
    )


def _axes(f: Frame, x_label: str, y_label: str, y_ticks: list[float], x_ticks: list[float]) -> list[str]:
    out = []
    for t in y_ticks:
        y = f.py(t)
        out.append(f'<line class="g" x1="{LEFT}" x2="{f.w - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for t in x_ticks:
        x = f.px(t)
        out.append(f'<text x="{x:.1f}" y="{f.h - BOTTOM + 15}" text-anchor="middle">{_fmt(t)}</text>')
    bottom = f.h - BOTTOM
    out.append(f'<line class="a" x1="{LEFT}" x2="{f.w - RIGHT}" y1="{bottom}" y2="{bottom}"/>')
    out.append(f'<line class="a" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom}"/>')
    mid_x = (LEFT + f.w - RIGHT) / 2
    out.append(f'<text x="{mid_x:.0f}" y="{f.h - 6}" text-anchor="middle">{escape(x_label)}</text>')
    mid_y = (TOP + bottom) / 2
    out.append(
        f'<text x="13" y="{mid_y:.0f}" text-anchor="middle" transform="rotate(-90 13 {mid_y:.0f})">'
        f"{escape(y_label)}</text>"
    )
    return out


def _legend(f: Frame, entries: list[tuple[str, str, bool]]) -> list[str]:
    out, x = [], f.w - RIGHT + 12
    for i, (name, color, dashed) in enumerate(entries):
        y = TOP + 8 + 16 * i
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        out.append(
            f'<line x1="{x}" x2="{x + 18}" y1="{y}" y2="{y}" stroke="{color}" stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{x + 24}" y="{y + 4}">{escape(name)}</text>')
    return out


def line_chart(
    series: Sequence[Series],
    markers: Sequence[Marker] = (),
    *,
    title: str,
    x_label: str,
    y_label: str,
    y_range: tuple[float, float] | None = None,
    x_range: tuple[float, float] | None = None,
    marker_legend: Sequence[tuple[str, str, bool]] = (),
) -> str:
    """Lines (or steps, or dots) over a shared x axis with vertical event markers.

    >>> svg = line_chart([Series("a", [0, 1, 2], [0.1, 0.5, 0.9], step=True)], [Marker(1, "swap")],
    ...                  title="acc", x_label="s", y_label="acc", y_range=(0, 1))
    >>> svg.count("<path"), "swap" in svg
    (1, True)
    """
    xs = [x for s in series for x in s.x] + [m.x for m in markers]
    ys = [y for s in series for y in s.y if math.isfinite(y)]
    x0, x1 = x_range or ((min(xs), max(xs)) if xs else (0.0, 1.0))
    y0, y1 = y_range or ((min([*ys, 0.0]), max(ys)) if ys else (0.0, 1.0))
    y_ticks = nice_ticks(y0, y1)
    if y_range is None:
        y0, y1 = y_ticks[0], y_ticks[-1]
    x_ticks = [t for t in nice_ticks(x0, x1, 8) if x0 <= t <= x1]
    f = Frame(x0, x1, y0, y1)
    body = _axes(f, x_label, y_label, y_ticks, x_ticks)
    for m in markers:
        x = f.px(m.x)
        dash = ' stroke-dasharray="4 3"' if m.dashed else ""
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{f.h - BOTTOM}" stroke="{m.color}"{dash}>'
        )
        body.append(f"<title>{escape(m.label)}</title></line>")
    entries: list[tuple[str, str, bool]] = []
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        entries.append((s.name, color, False))
        pts = [(f.px(x), f.py(y)) for x, y in zip(s.x, s.y, strict=True) if math.isfinite(y)]
        if not pts:
            continue
        if s.dots:
            body.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="1.6" fill="{color}"/>' for x, y in pts)
            continue
        d = [f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"]
        for xb, yb in pts[1:]:
            d.append(f"H{xb:.1f}V{yb:.1f}" if s.step else f"L{xb:.1f},{yb:.1f}")
        if s.step:  # hold the last value to the right edge
            d.append(f"H{f.w - RIGHT}")
        body.append(f'<path d="{"".join(d)}" fill="none" stroke="{color}" stroke-width="1.8"/>')
    body.extend(_legend(f, entries + list(marker_legend)))
    return _svg(body, title)


def heatmap(
    matrix: Sequence[Sequence[float]], rows: Sequence[str], cols: Sequence[str], *, title: str
) -> str:
    """Values in [0, 1] as shaded cells with the number printed in each.

    >>> svg = heatmap([[1.0, 0.0], [0.5, 0.9]], ["r0", "r1"], ["c0", "c1"], title="R")
    >>> svg.count("<rect") - 1, "0.50" in svg   # 4 cells plus the background
    (4, True)
    """
    cell_w, cell_h, left, top = 64, 30, 120, 48
    w = max(left + cell_w * len(cols) + 20, _title_width(title))
    h = top + cell_h * len(rows) + 20
    body = [
        f'<text x="{left + cell_w * (j + 0.5):.0f}" y="{top - 8}" text-anchor="middle">{escape(c)}</text>'
        for j, c in enumerate(cols)
    ]
    for i, (label, row) in enumerate(zip(rows, matrix, strict=False)):
        y = top + i * cell_h
        body.append(
            f'<text x="{left - 8}" y="{y + cell_h / 2 + 4:.0f}" text-anchor="end">{escape(label)}</text>'
        )
        for j, v in enumerate(row):
            shade = max(0.0, min(1.0, v))
            r, g, b = (round(247 - shade * (247 - c)) for c in (8, 81, 156))  # white -> dark blue
            ink = "white" if shade > 0.55 else "#222"
            body.append(
                f'<rect x="{left + j * cell_w}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                f'fill="rgb({r},{g},{b})"/>'
                f'<text x="{left + j * cell_w + cell_w / 2 - 1:.0f}" y="{y + cell_h / 2 + 4:.0f}" '
                f'text-anchor="middle" style="fill:{ink}">{v:.2f}</text>'
            )
    return _svg(body, title, w, h)


def bar_chart(labels: Sequence[str], values: Sequence[float], *, title: str, y_label: str) -> str:
    """One bar per label, its value printed above it."""
    hi = max([*values, 0.0]) or 1.0
    y_ticks = nice_ticks(0.0, hi)
    f = Frame(0, len(labels), 0, y_ticks[-1], w=max(_title_width(title), LEFT + 70 * len(labels) + RIGHT))
    body = _axes(f, "", y_label, y_ticks, [])
    slot = (f.w - LEFT - RIGHT) / max(1, len(labels))
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        x = LEFT + i * slot + slot * 0.2
        y = f.py(max(0.0, v))
        body.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.6:.1f}" height="{f.h - BOTTOM - y:.1f}" '
            f'fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{x + slot * 0.3:.1f}" y="{y - 4:.1f}" text-anchor="middle">{v:.3f}</text>'
            f'<text x="{x + slot * 0.3:.1f}" y="{f.h - BOTTOM + 15}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    return _svg(body, title, f.w)
