"""The statistics page's SVG charts (web/charts.py): well-formed, accessible, one bar per day,
scaled to the largest value, sane with zeros and no data, labels escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta

from bookingtms.web import charts
from bookingtms.web.admin_catalog import stats_charts

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup) -> ET.Element:
    root = ET.fromstring(str(markup))  # raises on anything not well-formed
    assert root.tag == f"{SVG}svg"
    return root


def bars(root: ET.Element) -> list[ET.Element]:
    return root.findall(f"{SVG}rect[@class='bar']")


def days(values) -> list[charts.Point]:
    start = date(2026, 3, 1)
    return [charts.Point((start + timedelta(days=n)).strftime("%d %b"), v) for n, v in enumerate(values)]


def test_a_bar_chart_is_accessible_and_has_one_bar_per_day():
    root = parse(charts.bar_chart(days([3, 0, 7, 1, 2]), title="Bookings per day"))
    assert root.get("role") == "img" and root.get("aria-label") == "Bookings per day"
    assert root.find(f"{SVG}title").text == "Bookings per day"
    found = bars(root)
    assert len(found) == 5
    assert [b.find(f"{SVG}title").text for b in found][:2] == ["01 Mar: 3", "02 Mar: 0"]
    # Axis labels: the days along the bottom and the value scale on the left.
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "01 Mar" in texts and "05 Mar" in texts and "0" in texts and "7" in texts


def test_bars_scale_to_the_largest_value():
    root = parse(charts.bar_chart(days([2, 8, 4]), title="t"))
    heights = [float(b.get("height")) for b in bars(root)]
    assert heights[1] == charts.PLOT_H  # the largest fills the plot
    assert heights[0] == charts.PLOT_H / 4 and heights[2] == charts.PLOT_H / 2
    # Bars stand on the same baseline.
    assert {round(float(b.get("y")) + float(b.get("height")), 1) for b in bars(root)} == {charts.TOP + charts.PLOT_H}


def test_all_zero_and_empty_data_render_without_dividing_by_zero():
    zeros = parse(charts.bar_chart(days([0, 0, 0]), title="Nothing booked"))
    assert [float(b.get("height")) for b in bars(zeros)] == [0, 0, 0]
    empty = parse(charts.bar_chart([], title="Empty"))
    assert bars(empty) == [] and "No data" in "".join(empty.itertext())
    assert "No data" in "".join(parse(charts.line_chart([], title="Empty line")).itertext())
    no_figures = parse(charts.line_chart(days([None, None]), title="Occupancy", top=100))
    assert no_figures.find(f"{SVG}path") is None and no_figures.findall(f"{SVG}circle") == []


def test_a_line_chart_leaves_gaps_where_there_is_no_figure():
    root = parse(charts.line_chart(days([50, None, 100, 25]), title="Occupancy", top=100))
    path = root.find(f"{SVG}path").get("d")
    assert path.count("M") == 2  # broken at the missing day
    dots = root.findall(f"{SVG}circle")
    assert len(dots) == 3
    ys = [float(d.get("cy")) for d in dots]
    assert ys[1] == charts.TOP and ys[0] == charts.TOP + charts.PLOT_H / 2  # 100% at the top, 50% half way


def test_labels_and_titles_are_escaped():
    nasty = '<script>alert("x")</script> & "quotes"'
    markup = str(charts.bar_chart([charts.Point(nasty, 1, title=nasty)], title=nasty))
    assert "<script>" not in markup
    root = parse(markup)
    assert root.get("aria-label") == nasty and root.find(f"{SVG}title").text == nasty
    assert bars(root)[0].find(f"{SVG}title").text == nasty
    assert nasty in [t.text for t in root.iter(f"{SVG}text")]


def test_many_days_keep_the_day_labels_readable():
    root = parse(charts.bar_chart(days(range(90)), title="A quarter"))
    assert len(bars(root)) == 90
    labels = [t for t in root.iter(f"{SVG}text") if t.get("text-anchor") == "middle"]
    assert 2 <= len(labels) <= charts.MAX_X_LABELS + 1 and labels[-1].text == days(range(90))[-1].label


def test_the_statistics_page_charts_come_from_the_stats_figures():
    first = date(2026, 3, 1)
    stats = {"currency": "USD", "days": [
        {"date": first, "bookings": 2, "revenue_amount": 5000, "occupancy": 0.5},
        {"date": first + timedelta(days=1), "bookings": 0, "revenue_amount": 0, "occupancy": None},
        {"date": first + timedelta(days=2), "bookings": 4, "revenue_amount": 12550, "occupancy": 1.0}]}
    made = {c["id"]: c for c in stats_charts(stats)}
    assert set(made) == {"bookings", "revenue", "occupancy"}
    assert len(bars(parse(made["bookings"]["svg"]))) == 3 and len(bars(parse(made["revenue"]["svg"]))) == 3
    revenue_tips = [b.find(f"{SVG}title").text for b in bars(parse(made["revenue"]["svg"]))]
    assert revenue_tips[2].endswith("125.50 USD")
    assert made["occupancy"]["rows"][1][1] == "–" and made["occupancy"]["rows"][2][1] == "100%"
    assert len(parse(made["occupancy"]["svg"]).findall(f"{SVG}circle")) == 2
