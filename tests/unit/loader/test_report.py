"""The summary of a run: latency percentiles, the JSON and the text."""

from __future__ import annotations

from collections import Counter

import pytest

from loader.report import LoadResult, percentiles


def test_percentiles_interpolate_like_numpy() -> None:
    assert percentiles([]) is None
    one = percentiles([7.0])
    assert one is not None and one[1] == one[99] == 7.0
    four = percentiles([1, 2, 3, 4])
    assert four is not None and four[50] == 2.5
    cuts = percentiles(list(range(1, 101)))  # numpy.percentile(range(1, 101), q)
    assert cuts is not None
    assert cuts[50] == pytest.approx(50.5)
    assert cuts[95] == pytest.approx(95.05)
    assert cuts[99] == pytest.approx(99.01)
    three = percentiles([5, 1, 3])  # unsorted input
    assert three is not None and three[1] == pytest.approx(1.04) and three[99] == 4.96


def test_latency_in_milliseconds() -> None:
    assert LoadResult().latency_ms() == {"p50": None, "p95": None, "p99": None}
    assert LoadResult(latencies=[0.25]).latency_ms() == {"p50": 250.0, "p95": 250.0, "p99": 250.0}
    latencies = [i / 10 for i in range(101)]  # 0 to 10 s: a percentile falls on a value
    assert LoadResult(latencies=latencies).latency_ms() == {
        "p50": 5000.0,
        "p95": 9500.0,
        "p99": 9900.0,
    }


def test_summary_and_report() -> None:
    result = LoadResult(
        accepted=90,
        rejected=10,
        skipped=Counter({"empty or missing content": 2, "invalid id": 1}),
        requests=12,
        retried=2,
        retried_unavailable=1,
        latencies=[0.1, 0.2],
        first_error="422 bad",
        started=10.0,
        finished=20.0,
    )
    summary = result.summary()
    assert summary["skipped"] == 3 and summary["articles_per_second"] == 9.0
    assert "drained" not in summary and not result.ok
    text = result.report()
    assert "accepted  90 articles in 10.0 s (9.0 articles/s)" in text
    assert "skipped   3 (empty or missing content: 2, invalid id: 1)" in text
    assert "retried   2 requests of 12 (1 after 503)" in text
    assert "first rejection: 422 bad" in text

    result.drained, result.drain_seconds = True, 5.0
    summary = result.summary()
    assert summary["end_to_end_seconds"] == 15.0
    assert summary["end_to_end_articles_per_second"] == 6.0
    assert "drained   5.0 s after the last POST; end to end 15.0 s" in result.report()
    result.drained, result.drain_seconds = False, None
    assert "drained   NO" in result.report()
