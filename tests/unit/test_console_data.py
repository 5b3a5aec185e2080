"""Console arithmetic without an emulator: samples stay bounded, merges, rates, the SVG chart."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from mapper.engine.samples import MAX_SAMPLES, add_sample
from mapper.web.chart import progress_svg
from mapper.web.console_data import duration_text, merged_samples, rate_now


def test_samples_stay_bounded_keep_the_first_and_the_newest_and_stay_in_order():
    samples: list = []
    for i in range(1000):
        samples = add_sample(samples, 100.0 + i * 2, i * 10)
    assert len(samples) <= MAX_SAMPLES
    assert samples[0] == [100.0, 0] and samples[-1] == [100.0 + 999 * 2, 9990]
    assert [t for t, _ in samples] == sorted(t for t, _ in samples)


def test_samples_closer_than_the_gap_replace_the_newest():
    samples = add_sample(add_sample(add_sample([], 10.0, 1), 10.2, 2), 10.4, 3)
    assert samples == [[10.0, 1], [10.4, 3]]


def test_merged_samples_sum_each_shards_latest_value_from_the_jobs_start():
    merged = merged_samples([[[10, 5], [20, 10]], [[15, 7]]], origin=0.0)
    assert merged == [[0.0, 0], [10.0, 5], [15.0, 12], [20.0, 17]]


def test_rate_now_is_measured_over_the_last_window():
    samples = [[0.0, 0], [100.0, 1000], [130.0, 1300]]
    assert rate_now(samples, 130.0) == 10.0
    assert rate_now([], 5.0) is None


def test_duration_text_reads_as_an_operator_would():
    assert [duration_text(s) for s in (5, 200, 3720, None)] == ["5s", "3m 20s", "1h 02m", ""]


def test_chart_is_well_formed_svg_with_one_point_a_sample():
    svg = ET.fromstring(str(progress_svg([[0, 0], [10, 50], [20, 80]])))
    line = svg.find("{http://www.w3.org/2000/svg}polyline")
    assert line is not None and len(line.get("points").split()) == 3
    empty = ET.fromstring(str(progress_svg([])))
    assert "no progress samples yet" in "".join(empty.itertext())
