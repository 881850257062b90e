"""Server-side SVG charts for the agreement dashboard: plain data in, shapes out.

Each function returns a :class:`Chart`, a list of SVG shapes with coordinates already computed,
which ``templates/annotate/_chart.html`` writes out element by element. Colours come from CSS
classes, except the heat map's cells whose colour is the datum (an SVG ``fill`` attribute, not an
inline style). No JavaScript: the charts are there the moment the page is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

WIDTH, HEIGHT = 520, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 36


@dataclass(frozen=True)
class Shape:
    tag: str  # rect, circle, line, polyline, polygon, text
    attrs: dict
    cls: str = ""
    title: str = ""
    text: str = ""


@dataclass
class Chart:
    key: str
    title: str
    width: int = WIDTH
    height: int = HEIGHT
    shapes: list[Shape] = field(default_factory=list)
    empty: str = ""  # said in the chart when there is nothing to draw yet

    def add(self, tag: str, cls: str = "", title: str = "", text: str = "", **attrs) -> None:
        self.shapes.append(
            Shape(
                tag=tag,
                attrs={k.replace("_", "-"): v for k, v in attrs.items()},
                cls=cls,
                title=title,
                text=text,
            )
        )


@dataclass(frozen=True)
class TimePoint:
    at: datetime
    value: float | None
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class ScatterPoint:
    x: float | None
    y: float | None
    label: str
    cls: str = ""


def _frame(chart: Chart, *, y_min: float, y_max: float, y_format: str = "{:.1f}") -> None:
    plot_bottom = chart.height - BOTTOM
    chart.add("line", "axis", x1=LEFT, y1=TOP, x2=LEFT, y2=plot_bottom)
    chart.add("line", "axis", x1=LEFT, y1=plot_bottom, x2=chart.width - RIGHT, y2=plot_bottom)
    for step in range(5):
        value = y_min + (y_max - y_min) * step / 4
        y = scale(value, y_min, y_max, plot_bottom, TOP)
        chart.add("line", "grid", x1=LEFT, y1=y, x2=chart.width - RIGHT, y2=y)
        chart.add(
            "text", "tick", x=LEFT - 6, y=y + 4, text_anchor="end", text=y_format.format(value)
        )


def scale(value: float, low: float, high: float, out_low: float, out_high: float) -> float:
    """``value`` mapped linearly from [low, high] onto [out_low, out_high], to 0.1 px."""
    if high == low:
        return round((out_low + out_high) / 2, 1)
    return round(out_low + (value - low) / (high - low) * (out_high - out_low), 1)


def empty_chart(chart: Chart, message: str) -> Chart:
    """The chart as an empty box saying ``message`` (nothing to draw yet)."""
    chart.empty = message
    chart.add("rect", "empty-box", x=1, y=1, width=chart.width - 2, height=chart.height - 2, rx=6)
    chart.add(
        "text",
        "empty-text",
        x=chart.width / 2,
        y=chart.height / 2,
        text_anchor="middle",
        text=message,
    )
    return chart


def time_chart(
    *,
    key: str,
    title: str,
    points: Sequence[TimePoint],
    y_min: float,
    y_max: float,
    y_format: str = "{:.1f}",
    value_format: str = "{:.3f}",
) -> Chart:
    """A line over time, with a shaded band where points carry low/high bounds."""
    chart = Chart(key=key, title=title)
    known = [p for p in points if p.value is not None]
    if not known:
        return empty_chart(chart, "Not computed yet")
    _frame(chart, y_min=y_min, y_max=y_max, y_format=y_format)
    start, end = known[0].at.timestamp(), known[-1].at.timestamp()
    plot_bottom = chart.height - BOTTOM

    def xy(point: TimePoint, value: float) -> tuple[float, float]:
        x = scale(point.at.timestamp(), start, end, LEFT + 8, chart.width - RIGHT - 8)
        y = scale(min(max(value, y_min), y_max), y_min, y_max, plot_bottom, TOP)
        return x, y

    banded = [p for p in known if p.low is not None and p.high is not None]
    if banded:
        upper = [xy(p, p.high) for p in banded]
        lower = [xy(p, p.low) for p in reversed(banded)]
        if len(banded) == 1:  # a band needs width: widen a single interval a little
            (x, y1), (_, y2) = upper[0], lower[0]
            upper, lower = [(x - 4, y1), (x + 4, y1)], [(x + 4, y2), (x - 4, y2)]
        chart.add("polygon", "band", points=_points(upper + lower))
    line = [xy(p, p.value) for p in known]
    if len(line) > 1:
        chart.add("polyline", "series", points=_points(line))
    for point, (x, y) in zip(known, line, strict=True):
        chart.add(
            "circle",
            "dot",
            cx=x,
            cy=y,
            r=3.5,
            title=f"{point.at:%Y-%m-%d %H:%M}: {value_format.format(point.value)}",
        )
    chart.add("text", "tick", x=LEFT, y=chart.height - 12, text=f"{known[0].at:%b %d %H:%M}")
    chart.add(
        "text",
        "tick",
        x=chart.width - RIGHT,
        y=chart.height - 12,
        text_anchor="end",
        text=f"{known[-1].at:%b %d %H:%M}",
    )
    return chart


def scatter_chart(
    *, key: str, title: str, points: Sequence[ScatterPoint], x_label: str, y_label: str
) -> Chart:
    """Annotators as dots: x on a log scale (seconds), y from 0 to 1."""
    chart = Chart(key=key, title=title)
    known = [p for p in points if p.x is not None and p.y is not None and p.x > 0]
    if not known:
        return empty_chart(chart, "No annotator figures yet")
    _frame(chart, y_min=0.0, y_max=1.0, y_format="{:.0%}")
    low = math.log10(min(p.x for p in known)) - 0.1
    high = math.log10(max(p.x for p in known)) + 0.1
    plot_bottom = chart.height - BOTTOM
    for exponent in range(math.floor(low), math.ceil(high) + 1):
        for base in (1, 2, 5):
            tick = math.log10(base) + exponent
            if low <= tick <= high:
                x = scale(tick, low, high, LEFT + 8, chart.width - RIGHT - 8)
                chart.add(
                    "text",
                    "tick",
                    x=x,
                    y=plot_bottom + 14,
                    text_anchor="middle",
                    text=f"{base * 10.0**exponent:g}",
                )
    for point in known:
        x = scale(math.log10(point.x), low, high, LEFT + 8, chart.width - RIGHT - 8)
        y = scale(point.y, 0.0, 1.0, plot_bottom, TOP)
        chart.add(
            "circle",
            f"dot {point.cls}".strip(),
            cx=x,
            cy=y,
            r=5,
            title=f"{point.label}: {point.y:.0%} at {point.x:.1f} s",
        )
    chart.add(
        "text",
        "axis-label",
        x=chart.width - RIGHT,
        y=chart.height - 4,
        text_anchor="end",
        text=x_label,
    )
    chart.add("text", "axis-label", x=LEFT + 4, y=TOP + 10, text=y_label)
    return chart


def bar_chart(*, key: str, title: str, bars: Sequence[tuple[str, int, str]]) -> Chart:
    """Horizontal bars: (label, count, css class)."""
    chart = Chart(key=key, title=title, height=max(120, 34 * len(bars) + 24))
    total = max((count for _, count, _ in bars), default=0)
    if not bars:
        return empty_chart(chart, "Nothing yet")
    label_width = 150
    usable = chart.width - label_width - 70
    for row, (label, count, cls) in enumerate(bars):
        y = 12 + row * 34
        width = usable * count / total if total else 0
        chart.add("text", "bar-label", x=label_width - 8, y=y + 17, text_anchor="end", text=label)
        chart.add("rect", "bar-track", x=label_width, y=y, width=usable, height=24, rx=4)
        chart.add(
            "rect",
            f"bar {cls}".strip(),
            x=label_width,
            y=y,
            width=round(max(width, 2), 1),
            height=24,
            rx=4,
            title=f"{label}: {count}",
        )
        chart.add("text", "bar-value", x=label_width + usable + 8, y=y + 17, text=f"{count:,}")
    return chart


def heatmap_chart(
    *, key: str, title: str, names: Sequence[str], values: Sequence[Sequence[float | None]]
) -> Chart:
    """A symmetric matrix of values in [-1, 1] as coloured cells (κ among annotators)."""
    size = len(names)
    cell = max(10, min(28, 420 // max(size, 1)))
    chart = Chart(
        key=key,
        title=title,
        width=max(WIDTH, 120 + cell * size + 20),
        height=max(160, 110 + cell * size),
    )
    if size == 0:
        return empty_chart(chart, "No pair of annotators shares enough items yet")
    left, top = 120, 100
    for row, name in enumerate(names):
        chart.add(
            "text",
            "tick",
            x=left - 6,
            y=top + row * cell + cell * 0.7,
            text_anchor="end",
            text=name[:16],
        )
        chart.add(
            "text",
            "tick",
            x=left + row * cell + cell * 0.7,
            y=top - 6,
            transform=f"rotate(-60 {left + row * cell + cell * 0.7} {top - 6})",
            text=name[:16],
        )
        for column, value in enumerate(values[row]):
            chart.add(
                "rect",
                "cell" if value is not None else "cell missing",
                x=left + column * cell,
                y=top + row * cell,
                width=cell - 1,
                height=cell - 1,
                fill=kappa_colour(value),
                title=f"{name} × {names[column]}: "
                + (f"κ = {value:.2f}" if value is not None else "too few shared items"),
            )
    return chart


def kappa_colour(value: float | None) -> str:
    """Red for disagreement, white at chance, green for agreement; grey when undefined."""
    if value is None:
        return "#e5e7eb"
    value = max(-1.0, min(1.0, value))
    if value >= 0:
        target = (21, 128, 61)
    else:
        target, value = (185, 28, 28), -value
    red, green, blue = (round(255 + (t - 255) * value) for t in target)
    return f"#{red:02x}{green:02x}{blue:02x}"


def _points(pairs: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{x},{y}" for x, y in pairs)


def histogram_chart(
    *,
    key: str,
    title: str,
    series: Sequence[tuple[str, str, Sequence[float]]],
    low: float,
    high: float,
    bins: int = 10,
) -> Chart:
    """Side-by-side histograms over [low, high]: (label, css class, values) per series, each
    as shares of its own total so that series of different sizes compare."""
    chart = Chart(key=key, title=title)
    if not any(len(values) for _, _, values in series):
        return empty_chart(chart, "Nothing judged yet")
    edges = [low + (high - low) * i / bins for i in range(bins + 1)]
    shares = []
    for _, _, values in series:
        counts = [0] * bins
        for value in values:
            index = (
                int((min(max(value, low), high) - low) / (high - low) * bins) if high > low else 0
            )
            counts[min(index, bins - 1)] += 1
        total = sum(counts)
        shares.append([c / total if total else 0.0 for c in counts])
    top = max(max(s) for s in shares) or 1.0
    _frame(chart, y_min=0, y_max=top * 100, y_format="{:.0f}%")
    plot_bottom = chart.height - BOTTOM
    slot = (chart.width - LEFT - RIGHT) / bins
    width = (slot - 4) / max(1, len(series))
    for b in range(bins):
        for s, ((label, cls, _), share) in enumerate(zip(series, shares, strict=True)):
            height = scale(share[b], 0, top, 0, plot_bottom - TOP)
            chart.add(
                "rect",
                f"bar {cls}".strip(),
                x=round(LEFT + b * slot + 2 + s * width, 1),
                y=round(plot_bottom - height, 1),
                width=round(width, 1),
                height=round(height, 1),
                title=f"{label}, {edges[b]:.2f}–{edges[b + 1]:.2f}: {100 * share[b]:.0f}%",
            )
        if b % 2 == 0:
            chart.add(
                "text",
                "tick",
                x=round(LEFT + b * slot, 1),
                y=plot_bottom + 16,
                text_anchor="start",
                text=f"{edges[b]:.2f}",
            )
    for s, (label, cls, values) in enumerate(series):
        x = chart.width - RIGHT - 170
        chart.add("rect", f"bar {cls}".strip(), x=x, y=TOP + 4 + 18 * s, width=12, height=12)
        chart.add(
            "text", "bar-label", x=x + 18, y=TOP + 14 + 18 * s, text=f"{label} ({len(values)})"
        )
    return chart
