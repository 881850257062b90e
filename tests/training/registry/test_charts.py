"""The model page's line charts, from plain data: positions worked out by hand."""

from training.registry.charts import HEIGHT, LEFT, TOP, WIDTH, Series, line_chart

BOTTOM_Y = HEIGHT - 34  # the plot's bottom edge (BOTTOM margin 34)


def _shapes(chart, cls):
    return [s for s in chart.shapes if s.cls.split()[0] == cls]


def test_points_are_placed_on_a_fixed_axis_and_joined_per_series():
    chart = line_chart(
        key="k",
        title="R@1",
        labels=["#1", "#2", "#3"],
        series=[Series("test", [0.0, 50.0, 100.0], "c1"), Series("val", [None, 25.0, None], "c2")],
        y_max=100.0,
    )
    assert not chart.empty
    dots = _shapes(chart, "pt")
    # x: from LEFT + 14 to WIDTH - RIGHT(18) - 14, three columns evenly spaced.
    left, right = LEFT + 14, WIDTH - 18 - 14
    assert [d.attrs["cx"] for d in dots[:3]] == [left, (left + right) / 2, right]
    # y: 0 at the bottom, 100 at the top, 50 half-way.
    assert [d.attrs["cy"] for d in dots[:3]] == [BOTTOM_Y, (BOTTOM_Y + TOP) / 2, TOP]
    assert dots[1].title == "#2 · test: 50.0"
    # One polyline for the full series; a series with one known point gets a dot only.
    traces = _shapes(chart, "trace")
    assert len(traces) == 1 and traces[0].cls == "trace c1"
    assert len(dots) == 4 and dots[3].cls == "pt c2"
    assert [s.text for s in _shapes(chart, "legend")] == ["test", "val"]


def test_the_marked_column_gets_a_line_a_label_and_bigger_dots():
    chart = line_chart(
        key="k",
        title="t",
        labels=["a", "b"],
        series=[Series("s", [1.0, 2.0])],
        marked=1,
        marked_label="promoted",
    )
    [marker] = _shapes(chart, "marker")
    assert marker.attrs["x1"] == marker.attrs["x2"] == WIDTH - 18 - 14
    assert [s.text for s in _shapes(chart, "marker-label")] == ["promoted"]
    dots = _shapes(chart, "pt")
    assert [d.attrs["r"] for d in dots] == [3, 4.5] and "is-marked" in dots[1].cls


def test_a_fitted_axis_ends_on_a_round_number():
    # Losses up to 2.37 from 0: a quarter is 0.5925, the next round step 0.6 -> 0 … 2.4.
    chart = line_chart(key="k", title="t", labels=["1", "2"], series=[Series("loss", [2.37, 1.1])])
    ticks = [s.text for s in chart.shapes if s.cls == "tick" and s.attrs["text-anchor"] == "end"]
    assert ticks == ["0", "0.6", "1.2", "1.8", "2.4"]


def test_nothing_to_draw_says_so():
    chart = line_chart(key="k", title="t", labels=["a"], series=[Series("s", [None])], empty="None")
    assert chart.empty == "None"
    assert [s.text for s in chart.shapes if s.cls == "empty-text"] == ["None"]
    assert line_chart(key="k", title="t", labels=[], series=[]).empty == "No figures yet"
