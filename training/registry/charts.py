"""Line charts of the model page, built from :mod:`annotate.agreement.charts`' shapes.

``annotate.agreement.charts`` draws one series over time; the model page needs several series over
categories (model versions, epochs), a legend, and one marked column (the promoted model, the
best epoch). The result is an :class:`annotate.agreement.charts.Chart`, so ``annotate/_chart.html``
writes it out exactly as it does the agreement dashboard's charts. Colours come from the CSS
classes ``c1``…``c4``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from annotate.agreement.charts import Chart, empty_chart, scale

WIDTH, HEIGHT = 520, 250
LEFT, RIGHT, TOP, BOTTOM = 52, 18, 40, 34
# At most this many category labels under the axis; the others are thinned out.
LABELS_MAX = 10
NICE_STEPS = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    cls: str = "c1"


def line_chart(
    *,
    key: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    y_min: float | None = 0.0,
    y_max: float | None = None,
    y_format: str = "{:g}",
    value_format: str = "{:.1f}",
    marked: int | None = None,
    marked_label: str = "",
    empty: str = "No figures yet",
) -> Chart:
    """Series over ``labels`` (evenly spaced), points joined where known, a legend above.

    ``y_min``/``y_max`` of ``None`` fit the data (rounded outwards to a readable step);
    ``marked`` is the index of the column to mark with a dashed line and ``marked_label``.
    """
    chart = Chart(key=key, title=title, width=WIDTH, height=HEIGHT)
    known = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    if not labels or not known:
        return empty_chart(chart, empty)
    low = min(known) if y_min is None else y_min
    high = max(known) if y_max is None else y_max
    low, high = _readable_range(low, high, fit_low=y_min is None, fit_high=y_max is None)
    plot_bottom = chart.height - BOTTOM
    _frame(chart, low=low, high=high, y_format=y_format)

    count = len(labels)
    xs = [scale(i, 0, count - 1, LEFT + 14, chart.width - RIGHT - 14) for i in range(count)]
    step = math.ceil(count / LABELS_MAX)
    for index, label in enumerate(labels):
        if index % step == 0 or index == count - 1:
            chart.add(
                "text", "tick", x=xs[index], y=plot_bottom + 16, text_anchor="middle", text=label
            )
    if marked is not None and 0 <= marked < count:
        chart.add(
            "line",
            "marker",
            x1=xs[marked],
            y1=TOP - 6,
            x2=xs[marked],
            y2=plot_bottom,
            stroke_dasharray="4 3",
        )
        if marked_label:
            anchor = "end" if xs[marked] > chart.width / 2 else "start"
            offset = -4 if anchor == "end" else 4
            chart.add(
                "text",
                "marker-label",
                x=xs[marked] + offset,
                y=TOP - 10,
                text_anchor=anchor,
                text=marked_label,
            )

    for line in series:
        points = [
            (index, xs[index], scale(min(max(v, low), high), low, high, plot_bottom, TOP), v)
            for index, v in enumerate(line.values[:count])
            if v is not None and math.isfinite(v)
        ]
        if len(points) > 1:
            chart.add(
                "polyline",
                f"trace {line.cls}",
                points=" ".join(f"{x},{y}" for _, x, y, _ in points),
            )
        for index, x, y, value in points:
            chart.add(
                "circle",
                f"pt {line.cls}" + (" is-marked" if index == marked else ""),
                cx=x,
                cy=y,
                r=4.5 if index == marked else 3,
                title=f"{labels[index]} · {line.name}: {value_format.format(value)}",
            )
    _legend(chart, series)
    return chart


def _legend(chart: Chart, series: Sequence[Series]) -> None:
    x = LEFT
    for line in series:
        chart.add("line", f"swatch {line.cls}", x1=x, y1=12, x2=x + 16, y2=12)
        chart.add("text", "legend", x=x + 21, y=16, text=line.name)
        x += 21 + 7 * len(line.name) + 18


def _frame(chart: Chart, *, low: float, high: float, y_format: str) -> None:
    plot_bottom = chart.height - BOTTOM
    for step in range(5):
        value = low + (high - low) * step / 4
        y = scale(value, low, high, plot_bottom, TOP)
        chart.add("line", "grid", x1=LEFT, y1=y, x2=chart.width - RIGHT, y2=y)
        chart.add(
            "text", "tick", x=LEFT - 6, y=y + 4, text_anchor="end", text=y_format.format(value)
        )
    chart.add("line", "axis", x1=LEFT, y1=TOP, x2=LEFT, y2=plot_bottom)
    chart.add("line", "axis", x1=LEFT, y1=plot_bottom, x2=chart.width - RIGHT, y2=plot_bottom)


def _readable_range(
    low: float, high: float, *, fit_low: bool, fit_high: bool
) -> tuple[float, float]:
    """Widen the fitted ends so the five grid lines (quarters of the range) fall on round
    numbers: a step of 1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten. Fixed ends stay."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    if not (fit_low or fit_high):
        return low, high
    wanted = (high - low) / 4
    while True:
        magnitude = 10 ** math.floor(math.log10(wanted))
        step = next(m * magnitude for m in NICE_STEPS if m * magnitude >= wanted * (1 - 1e-9))
        start = math.floor(low / step + 1e-9) * step if fit_low else low
        end = start + 4 * step if fit_high else high
        if not fit_high or end >= high - 1e-9 * max(1.0, abs(high)):
            return start, end
        wanted = step * 1.001
