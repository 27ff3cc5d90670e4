"""Server-rendered SVG charts for the staff dashboard: no script, no inline style (the CSP allows
neither), only presentation attributes and the classes of app.css (.chart .bar/.line/.axis/.grid).

Each chart is an `<svg role="img">` with an aria-label and a `<title>`; every bar or point has its
own `<title>` (a tooltip on hover). The pages put the numbers in a table beside the chart for
screen readers. Labels are escaped: they are text, whatever they contain."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 34  # room for the value axis (left) and the day labels (bottom)
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
MAX_X_LABELS = 8


@dataclass(frozen=True)
class Point:
    label: str  # the x axis label (a day: "03-14")
    value: float | None  # None: no figure that day (a gap in a line)
    title: str = ""  # the tooltip; the label and value when empty


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _frame(title: str, body: list[str], css: str) -> Markup:
    label = escape(title)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" '
        f'class="{css}" preserveAspectRatio="xMidYMid meet"><title>{label}</title>{"".join(body)}</svg>')


def _empty(title: str, css: str) -> Markup:
    return _frame(title, [f'<text class="axis" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">No data for '
                          f'this period</text>'], css)


def _value_axis(top_value: float, fmt: Callable[[float], str]) -> list[str]:
    """Grid lines and labels at 0, half and the top of the scale (no half line under a top of 1: a
    count of 0.5 bookings means nothing)."""
    out = []
    for fraction in ((0, 1) if top_value == 1 else (0, 0.5, 1)):
        y = TOP + PLOT_H * (1 - fraction)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_num(y)}" y2="{_num(y)}" '
                   f'stroke="#e6e9ee"/>')
        out.append(f'<text class="axis" x="{LEFT - 6}" y="{_num(y + 4)}" text-anchor="end">'
                   f'{escape(fmt(top_value * fraction))}</text>')
    out.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + PLOT_H}" stroke="#b8c0cb"/>')
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + PLOT_H}" y2="{TOP + PLOT_H}" stroke="#b8c0cb"/>')
    return out


def _x_labels(points: Sequence[Point], centre: Callable[[int], float]) -> list[str]:
    """At most MAX_X_LABELS labels, evenly spread, the last day always labelled."""
    last = len(points) - 1
    step = max(1, -(-len(points) // MAX_X_LABELS))
    shown = list(range(0, last + 1, step))
    if shown[-1] != last:
        if last - shown[-1] < step / 2 and len(shown) > 1:
            shown.pop()  # too close to the last one to fit both
        shown.append(last)
    return [f'<text class="axis" x="{_num(centre(i))}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
            f'{escape(points[i].label)}</text>' for i in shown]


def _tip(point: Point, fmt: Callable[[float], str]) -> str:
    text = point.title or f"{point.label}: {'no data' if point.value is None else fmt(point.value)}"
    return f"<title>{escape(text)}</title>"


def _scale_top(values: list[float], least: float = 1) -> float:
    """The top of the value axis: the largest value (so the tallest bar fills the plot); `least`
    when all are zero (or smaller)."""
    top = max(values, default=0)
    return top if top >= least else least


def bar_chart(points: Sequence[Point], *, title: str, fmt: Callable[[float], str] = _num,
              least: float = 1, css: str = "bars") -> Markup:
    """One bar per point, scaled so the largest reaches the top of the plot (the scale is at
    least `least`: with all zeros the axis still reads 0 to something)."""
    if not points:
        return _empty(title, css)
    top = _scale_top([p.value or 0 for p in points], least)
    slot = PLOT_W / len(points)
    width = max(1.0, slot * 0.7)
    body = _value_axis(top, fmt)
    for i, point in enumerate(points):
        value = max(point.value or 0, 0)
        height = PLOT_H * value / top
        x = LEFT + slot * i + (slot - width) / 2
        body.append(f'<rect class="bar" x="{_num(x)}" y="{_num(TOP + PLOT_H - height)}" width="{_num(width)}" '
                    f'height="{_num(height)}" fill="#1f5eff" data-value="{_num(value)}">{_tip(point, fmt)}</rect>')
    body += _x_labels(points, lambda i: LEFT + slot * i + slot / 2)
    return _frame(title, body, css)


def line_chart(points: Sequence[Point], *, title: str, fmt: Callable[[float], str] = _num,
               top: float | None = None, css: str = "lines") -> Markup:
    """A line through the points (a gap where a value is None), with a dot on each. `top` fixes
    the scale (100 for percentages); by default the largest value."""
    if not points:
        return _empty(title, css)
    values = [p.value for p in points if p.value is not None]
    top = top if top else _scale_top(values)
    slot = PLOT_W / len(points)
    body = _value_axis(top, fmt)
    segments: list[list[tuple[float, float]]] = [[]]
    dots = []
    for i, point in enumerate(points):
        if point.value is None:
            segments.append([])
            continue
        x = LEFT + slot * i + slot / 2
        y = TOP + PLOT_H * (1 - min(max(point.value, 0), top) / top)
        segments[-1].append((x, y))
        dots.append(f'<circle class="dot" cx="{_num(x)}" cy="{_num(y)}" r="3" fill="#1f5eff" data-value="{_num(point.value)}">'
                    f'{_tip(point, fmt)}</circle>')
    path = " ".join("M" + " L".join(f"{_num(x)} {_num(y)}" for x, y in seg) for seg in segments if seg)
    if path:
        body.append(f'<path class="line" d="{path}" fill="none" stroke="#1f5eff" stroke-width="2"/>')
    body += dots
    body += _x_labels(points, lambda i: LEFT + slot * i + slot / 2)
    return _frame(title, body, css)
