"""Static inline SVG charts (no JavaScript): forest plots, heatmaps and line plots.

Charts are strings built in Python so the HTML and the WeasyPrint PDF show the same
picture and nothing runs in the reader's browser. Every piece of text that comes
from results.json (group labels, categories, series names) is XML-escaped here.
Status is never shown by colour alone: markers differ in shape and a text column
names the flag.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

FONT = "font-family='DejaVu Sans, Liberation Sans, Arial, sans-serif'"
STATUS_STYLE = {  # status -> (colour, marker shape, short text)
    "favoured": ("#1a7f37", "up", "favoured"),
    "disfavoured": ("#b3261e", "down", "disfavoured"),
    "reference": ("#1f4e79", "diamond", "reference"),
    "neutral": ("#333333", "circle", ""),
}
SHORT = {"accuracy": "acc", "nmae": "nmae", "representativeness": "rep", "similarity": "sim"}
SERIES_COLOURS = ("#1f4e79", "#b3261e", "#1a7f37", "#8a5a00", "#6a3d9a", "#00838f", "#5d4037", "#37474f")
SERIES_DASHES = ("", "6 3", "2 2", "8 3 2 3", "4 4", "1 3", "10 4", "3 6")


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def _fmt(x: float) -> str:
    return f"{x:.2f}" if abs(x) < 100 else f"{x:.0f}"


def _truncate(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _truncate_middle(text: str, n: int) -> str:
    """Keep both ends ("religion:age: Oth…ligion, 65+"): intersection labels differ at the end."""
    if len(text) <= n:
        return text
    head = (n - 1) // 2
    return text[:head] + "…" + text[len(text) - (n - 1 - head):]


def _wrapped(text: str, width: int, lines: int = 2) -> list[str]:
    import textwrap

    out = textwrap.wrap(text, width) or [""]
    if len(out) > lines:
        out = [*out[: lines - 1], _truncate(" ".join(out[lines - 1:]), width)]
    return out


@dataclass(frozen=True)
class Scale:
    """Linear map from a data domain to pixel range."""

    lo: float
    hi: float
    p0: float
    p1: float

    def __call__(self, v: float) -> float:
        span = self.hi - self.lo or 1.0
        return self.p0 + (v - self.lo) / span * (self.p1 - self.p0)


def nice_domain(values: Sequence[float], unit: bool = True) -> tuple[float, float]:
    """A padded domain covering ``values``; clamped to [0, 1] when they all lie there."""
    vals = [float(v) for v in values if _finite(v)]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    pad = max((hi - lo) * 0.08, 0.02)
    lo, hi = lo - pad, hi + pad
    if unit and min(vals) >= 0 and max(vals) <= 1:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return lo, hi


def ticks(lo: float, hi: float, n: int = 3) -> list[float]:
    """About ``n`` round tick values inside [lo, hi]."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    steps = sorted({m * mag * f for m in (1, 2, 2.5, 5) for f in (0.1, 1, 10)})
    chosen = [st for st in steps if st >= raw]
    step = chosen[0] if chosen else raw
    for cand in [step, *reversed([st for st in steps if st < step])]:  # a scale needs two labels to be read
        first = math.ceil(lo / cand - 1e-9) * cand
        out, v = [], first
        while v <= hi + 1e-12:
            out.append(round(v, 10))
            v += cand
        if len(out) >= 2:
            return out
    return out


def _marker(shape: str, x: float, y: float, colour: str, r: float = 4.5) -> str:
    if shape == "up":
        pts = f"{x:.1f},{y - r:.1f} {x - r:.1f},{y + r * 0.8:.1f} {x + r:.1f},{y + r * 0.8:.1f}"
        return f"<polygon points='{pts}' fill='{colour}'/>"
    if shape == "down":
        pts = f"{x:.1f},{y + r:.1f} {x - r:.1f},{y - r * 0.8:.1f} {x + r:.1f},{y - r * 0.8:.1f}"
        return f"<polygon points='{pts}' fill='{colour}'/>"
    if shape == "diamond":
        pts = f"{x:.1f},{y - r:.1f} {x + r:.1f},{y:.1f} {x:.1f},{y + r:.1f} {x - r:.1f},{y:.1f}"
        return f"<polygon points='{pts}' fill='{colour}'/>"
    return f"<circle cx='{x:.1f}' cy='{y:.1f}' r='{r * 0.8:.1f}' fill='{colour}'/>"


@dataclass(frozen=True)
class ForestRow:
    """One group of a forest plot: per metric (value, lo, hi, status)."""

    label: str
    cells: dict[str, tuple[float | None, float | None, float | None, str]]


def forest_plot(
    rows: Sequence[ForestRow],
    metrics: Sequence[str],
    reference: dict[str, float | None],
    titles: dict[str, str] | None = None,
    caption: str = "",
) -> Markup:
    """Groups (rows) x metrics (panels): point, interval, dashed reference line, flag text column."""
    titles = titles or {}
    label_w, panel_w, gap, flag_w, row_h, head, foot = 170, 140, 26, 150, 20, 30, 26
    width = label_w + len(metrics) * (panel_w + gap) + flag_w
    height = head + row_h * max(len(rows), 1) + foot
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='chart forest' viewBox='0 0 {width} {height}' "
        f"width='{width}' height='{height}' role='img' aria-label='{_e(caption or 'forest plot')}' {FONT}>"
    ]
    for i, _row in enumerate(rows):
        if i % 2 == 0:
            y = head + i * row_h
            parts.append(f"<rect x='0' y='{y}' width='{width}' height='{row_h}' fill='#f4f6f8'/>")
    for i, row in enumerate(rows):
        y = head + i * row_h + row_h / 2 + 4
        parts.append(f"<text x='4' y='{y:.1f}' font-size='12'>{_e(_truncate(row.label, 26))}</text>")
    for j, m in enumerate(metrics):
        x0 = label_w + j * (panel_w + gap)
        values: list[float] = []
        for row in rows:
            v, lo, hi, _s = row.cells.get(m, (None, None, None, "neutral"))
            values += [x for x in (v, lo, hi) if _finite(x)]
        if _finite(reference.get(m)):
            values.append(float(reference[m]))  # type: ignore[arg-type]
        dlo, dhi = nice_domain(values)
        sx = Scale(dlo, dhi, x0 + 4, x0 + panel_w - 4)
        parts.append(f"<text x='{x0 + panel_w / 2:.1f}' y='14' font-size='12' font-weight='bold' "
                     f"text-anchor='middle'>{_e(titles.get(m, m))}</text>")  # fmt: skip
        top, bottom = head - 4, head + row_h * len(rows)
        parts.append(f"<rect x='{x0}' y='{top}' width='{panel_w}' height='{bottom - top}' fill='none' "
                     "stroke='#9aa5b1' stroke-width='0.6'/>")  # fmt: skip
        for t in ticks(dlo, dhi):
            tx = sx(t)
            parts.append(f"<line x1='{tx:.1f}' x2='{tx:.1f}' y1='{bottom}' y2='{bottom + 4}' stroke='#555'/>")
            parts.append(f"<text x='{tx:.1f}' y='{bottom + 15}' font-size='10.5' text-anchor='middle'>{_fmt(t)}</text>")
        ref = reference.get(m)
        if _finite(ref):
            rx = sx(float(ref))  # type: ignore[arg-type]
            parts.append(f"<line x1='{rx:.1f}' x2='{rx:.1f}' y1='{top}' y2='{bottom}' stroke='#1f4e79' "
                         "stroke-dasharray='4 3' stroke-width='1'/>")  # fmt: skip
            parts.append(f"<text x='{rx:.1f}' y='{head - 7}' font-size='8.5' fill='#1f4e79' "
                         "text-anchor='middle'>ref</text>")  # fmt: skip
        for i, row in enumerate(rows):
            v, lo, hi, status = row.cells.get(m, (None, None, None, "neutral"))
            cy = head + i * row_h + row_h / 2
            if not _finite(v):
                parts.append(f"<text x='{x0 + panel_w / 2:.1f}' y='{cy + 4:.1f}' font-size='9' fill='#777' "
                             "text-anchor='middle'>not defined</text>")  # fmt: skip
                continue
            colour, shape, _t = STATUS_STYLE.get(status, STATUS_STYLE["neutral"])
            if _finite(lo) and _finite(hi):
                parts.append(f"<line x1='{sx(float(lo)):.1f}' x2='{sx(float(hi)):.1f}' y1='{cy:.1f}' "  # type: ignore[arg-type]
                             f"y2='{cy:.1f}' stroke='{colour}' stroke-width='1.6'/>")  # fmt: skip
            parts.append(_marker(shape, sx(float(v)), cy, colour))  # type: ignore[arg-type]
    fx = label_w + len(metrics) * (panel_w + gap)
    parts.append(f"<text x='{fx}' y='14' font-size='11' font-weight='bold'>Flags</text>")
    for i, row in enumerate(rows):
        y = head + i * row_h + row_h / 2 + 4
        by_status: dict[str, list[str]] = {}
        for m in metrics:
            status = row.cells.get(m, (None, None, None, "neutral"))[3]
            if status in ("favoured", "disfavoured"):
                by_status.setdefault(status, []).append(SHORT.get(m, m[:4]))
            if status == "reference":
                by_status["reference"] = []
        words = []
        for status in ("disfavoured", "favoured", "reference"):
            if status in by_status:
                colour = STATUS_STYLE[status][0]
                sym = {"disfavoured": "▼", "favoured": "▲", "reference": "◆"}[status]
                text = ", ".join(by_status[status]) if by_status[status] else status
                words.append(f"<tspan fill='{colour}'>{sym} {_e(text)}</tspan>")
        parts.append(f"<text x='{fx}' y='{y:.1f}' font-size='10.5'>{' '.join(words)}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))


def heatmap(
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    values: Sequence[Sequence[float | None]],
    higher_is_better: bool = True,
    caption: str = "",
) -> Markup:
    """Cells coloured by value (darker = better) with the value printed in each cell."""
    label_w, cell_w, cell_h, head = 200, 62, 21, 150
    width = label_w + cell_w * max(len(col_labels), 1) + 120  # room for the slanted headings
    height = head + cell_h * max(len(row_labels), 1) + 6
    flat = [float(v) for r in values for v in r if _finite(v)]
    lo, hi = (min(flat), max(flat)) if flat else (0.0, 1.0)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='chart heatmap' viewBox='0 0 {width} {height}' "
        f"width='{width}' height='{height}' role='img' aria-label='{_e(caption or 'heatmap')}' {FONT}>"
    ]
    if flat:  # the key, in the free corner left of the slanted headings: what the shades mean and span
        key = ["darker = better", f"({'higher' if higher_is_better else 'lower'} is better)",
               f"shades span {lo:.2f} to {hi:.2f}", "– = not defined"]  # fmt: skip
        spans = "".join(f"<tspan x='4' dy='{0 if k == 0 else 13}'>{_e(t)}</tspan>" for k, t in enumerate(key))
        parts.append(f"<text x='4' y='{head - 8 - 13 * (len(key) - 1)}' font-size='10' fill='#333'>{spans}</text>")
    for j, c in enumerate(col_labels):
        x = label_w + j * cell_w + cell_w / 2
        lines = _wrapped(c, 24, lines=3)
        spans = "".join(f"<tspan x='0' dy='{0 if k == 0 else 12}'>{_e(t)}</tspan>" for k, t in enumerate(lines))
        parts.append(f"<text transform='translate({x + 3 - 6 * (len(lines) - 1):.1f},{head - 6 - 12 * (len(lines) - 1)}) "
                     f"rotate(-50)' font-size='11'><title>{_e(c)}</title>{spans}</text>")  # fmt: skip
    for i, r in enumerate(row_labels):
        y = head + i * cell_h
        parts.append(f"<text x='4' y='{y + cell_h - 6}' font-size='11.5'><title>{_e(r)}</title>"
                     f"{_e(_truncate_middle(r, 32))}</text>")  # fmt: skip
        for j in range(len(col_labels)):
            v = values[i][j] if j < len(values[i]) else None
            x = label_w + j * cell_w
            if not _finite(v):
                parts.append(f"<rect x='{x}' y='{y}' width='{cell_w - 1}' height='{cell_h - 1}' fill='#ffffff' "
                             "stroke='#dde1e6'/>")  # fmt: skip
                parts.append(f"<text x='{x + cell_w / 2:.1f}' y='{y + cell_h - 5}' font-size='9' fill='#888' "
                             "text-anchor='middle'>–</text>")  # fmt: skip
                continue
            t = (float(v) - lo) / (hi - lo) if hi > lo else 0.5  # type: ignore[arg-type]
            good = t if higher_is_better else 1 - t
            light = 95 - 55 * good  # lightness: better = darker blue
            fg = "#ffffff" if light < 62 else "#111111"
            parts.append(f"<rect x='{x}' y='{y}' width='{cell_w - 1}' height='{cell_h - 1}' "
                         f"fill='hsl(210, 55%, {light:.0f}%)'/>")  # fmt: skip
            parts.append(f"<text x='{x + cell_w / 2:.1f}' y='{y + cell_h - 6}' font-size='11' fill='{fg}' "
                         f"text-anchor='middle'>{float(v):.2f}</text>")  # type: ignore[arg-type]
    parts.append("</svg>")
    return Markup("".join(parts))


def line_plot(
    x: Sequence[float],
    series: dict[str, Sequence[float | None]],
    y2: dict[str, Sequence[float | None]] | None = None,
    title: str = "",
    x_label: str = "",
) -> Markup:
    """Series against x (left axis) and optional series on a right axis; legend names every line."""
    y2 = y2 or {}
    width, height = 640, 300
    left, right, top, bottom = 56, 60 if y2 else 20, 30, 70
    xs = [float(v) for v in x if _finite(v)]
    xlo, xhi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if xhi == xlo:
        xlo, xhi = xlo - 1, xhi + 1
    sx = Scale(xlo, xhi, left, width - right)

    def yscale(group: dict[str, Sequence[float | None]]) -> Scale:
        lo, hi = nice_domain([v for s in group.values() for v in s if _finite(v)], unit=False)
        return Scale(lo, hi, height - bottom, top)

    sy, sy2 = yscale(series), yscale(y2) if y2 else None
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='chart line' viewBox='0 0 {width} {height}' "
        f"width='{width}' height='{height}' role='img' aria-label='{_e(title or 'line plot')}' {FONT}>",
        f"<text x='{width / 2}' y='16' font-size='12' font-weight='bold' text-anchor='middle'>{_e(title)}</text>",
        f"<rect x='{left}' y='{top}' width='{width - left - right}' height='{height - top - bottom}' fill='none' "
        "stroke='#9aa5b1'/>",
    ]
    for t in ticks(xlo, xhi, 5):
        tx = sx(t)
        parts.append(f"<text x='{tx:.1f}' y='{height - bottom + 14}' font-size='10' text-anchor='middle'>"
                     f"{_fmt(t)}</text>")  # fmt: skip
    parts.append(f"<text x='{(left + width - right) / 2:.1f}' y='{height - bottom + 30}' font-size='10.5' "
                 f"text-anchor='middle'>{_e(x_label)}</text>")  # fmt: skip
    for t in ticks(sy.lo, sy.hi, 4):
        ty = sy(t)
        parts.append(f"<line x1='{left}' x2='{width - right}' y1='{ty:.1f}' y2='{ty:.1f}' stroke='#e3e7eb'/>")
        parts.append(f"<text x='{left - 4}' y='{ty + 3:.1f}' font-size='10' text-anchor='end'>{_fmt(t)}</text>")
    if sy2 is not None:
        for t in ticks(sy2.lo, sy2.hi, 4):
            parts.append(f"<text x='{width - right + 4}' y='{sy2(t) + 3:.1f}' font-size='10'>{_fmt(t)}</text>")
    # axis titles: which series each axis measures (the legend alone leaves the scales unnamed)
    mid = (top + height - bottom) / 2
    parts.append(f"<text transform='translate(12,{mid:.1f}) rotate(-90)' font-size='10' text-anchor='middle'>"
                 f"{_e(_truncate(' / '.join(series), 48))}</text>")  # fmt: skip
    if sy2 is not None and y2:
        parts.append(f"<text transform='translate({width - 6},{mid:.1f}) rotate(90)' font-size='10' "
                     f"text-anchor='middle'>{_e(_truncate(' / '.join(y2), 48))}</text>")  # fmt: skip
    legend = []
    for k, (name, ys, scale, axis) in enumerate(
        [(n, s, sy, "") for n, s in series.items()] + [(n, s, sy2, " (right axis)") for n, s in y2.items()]
    ):
        colour, dash = SERIES_COLOURS[k % len(SERIES_COLOURS)], SERIES_DASHES[k % len(SERIES_DASHES)]
        pts = [(sx(float(a)), scale(float(b))) for a, b in zip(x, ys) if _finite(a) and _finite(b)]  # type: ignore[misc]
        if len(pts) > 1:
            d = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
            dash_attr = f" stroke-dasharray='{dash}'" if dash else ""
            parts.append(f"<polyline points='{d}' fill='none' stroke='{colour}' stroke-width='1.8'{dash_attr}/>")
        for px, py in pts:
            parts.append(f"<circle cx='{px:.1f}' cy='{py:.1f}' r='2.6' fill='{colour}'/>")
        legend.append((name + axis, colour, dash))
    ly = height - 22
    lx = left
    for name, colour, dash in legend:
        dash_attr = f" stroke-dasharray='{dash}'" if dash else ""
        parts.append(f"<line x1='{lx}' x2='{lx + 22}' y1='{ly}' y2='{ly}' stroke='{colour}' stroke-width='2'{dash_attr}/>")
        label = _truncate(name, 28)
        parts.append(f"<text x='{lx + 26}' y='{ly + 4}' font-size='10'>{_e(label)}</text>")
        lx += 40 + 6 * len(label)
        if lx > width - 120:
            lx, ly = left, ly + 14
    parts.append("</svg>")
    return Markup("".join(parts))
