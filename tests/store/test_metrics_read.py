"""Metric queries over points written straight into the tables: exact per-step results."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from tests.metric_rows import metric_rows
from vigil.store.client import Client
from vigil.store.metrics_read import MetricQuery, MetricQueryError, Series
from vigil.store.migrate import migrate
from vigil.store.read import StoreReader
from vigil.store.schema import DdlContext
from vigil.store.write import StoreWriter

STEP = 60
# A whole hour in the past, so every step of a query over it is complete and inside retention.
BASE = int(time.time()) // 3600 * 3600 - 3600


@pytest.fixture
def store(chdb_client: Client, database: str) -> tuple[StoreWriter, StoreReader]:
    migrate(chdb_client, DdlContext(database=database))
    return StoreWriter(chdb_client, database), StoreReader(chdb_client, database)


def run(reader: StoreReader, name: str, metric_type: str, agg: Any, **kwargs: Any) -> list[Series]:
    query = MetricQuery(name, metric_type, agg, kwargs.pop("step", STEP), BASE, BASE + 3 * STEP, **kwargs)
    return reader.metric_series(query)


def only(series: list[Series]) -> list[tuple[int, float]]:
    assert len(series) == 1
    return series[0].points


def test_gauge_statistics_per_step_grouped_and_filtered(store: tuple[StoreWriter, StoreReader]) -> None:
    writer, reader = store
    points = [
        {"name": "temp", "time": BASE + 5, "Value": 1.0, "attributes": {"room": "a"}},
        {"name": "temp", "time": BASE + 20, "Value": 2.0, "attributes": {"room": "a"}},
        {"name": "temp", "time": BASE + 40, "Value": 3.0, "attributes": {"room": "a"}},
        {"name": "temp", "time": BASE + 50, "Value": 4.0, "attributes": {"room": "a"}},
        {"name": "temp", "time": BASE + 70, "Value": 10.0, "attributes": {"room": "b"}},
        {"name": "temp", "time": BASE - 30, "Value": 99.0, "attributes": {"room": "a"}},  # before the window
    ]
    writer.insert("metrics_gauge", metric_rows("metrics_gauge", points))
    assert only(run(reader, "temp", "gauge", "avg")) == [(BASE, 2.5), (BASE + 60, 10.0)]
    assert only(run(reader, "temp", "gauge", "max")) == [(BASE, 4.0), (BASE + 60, 10.0)]
    assert only(run(reader, "temp", "gauge", "min")) == [(BASE, 1.0), (BASE + 60, 10.0)]
    # Linear interpolation between closest ranks, as numpy.percentile: 1 + 0.5 * 3 = 2.5; 1 + 0.95 * 3 = 3.85.
    assert only(run(reader, "temp", "gauge", "p50"))[0] == (BASE, 2.5)
    assert only(run(reader, "temp", "gauge", "p95"))[0] == (BASE, pytest.approx(3.85))
    grouped = run(reader, "temp", "gauge", "avg", group_by=("room",))
    assert [(s.labels, s.points) for s in grouped] == [
        ({"room": "a"}, [(BASE, 2.5)]),
        ({"room": "b"}, [(BASE + 60, 10.0)]),
    ]
    assert only(run(reader, "temp", "gauge", "avg", filters=(("room", "b"),))) == [(BASE + 60, 10.0)]
    assert run(reader, "temp", "gauge", "avg", filters=(("service", "other"),)) == []


def test_rate_of_a_cumulative_counter_handles_restarts_and_reads_one_step_back(
    store: tuple[StoreWriter, StoreReader],
) -> None:
    writer, reader = store
    start = BASE - 600
    common = {"name": "requests", "AggregationTemporality": 2, "IsMonotonic": True}
    points = [
        {**common, "time": BASE - 10, "start": start, "Value": 100.0},  # the predecessor, one step back
        {**common, "time": BASE + 10, "start": start, "Value": 160.0},  # +60
        {**common, "time": BASE + 50, "start": start, "Value": 190.0},  # +30
        {**common, "time": BASE + 70, "start": BASE + 65, "Value": 12.0},  # a restart: +12
        {**common, "time": BASE + 110, "start": BASE + 65, "Value": 42.0},  # +30
    ]
    writer.insert("metrics_sum", metric_rows("metrics_sum", points))
    assert only(run(reader, "requests", "sum", "sum")) == [(BASE, 90.0), (BASE + 60, 42.0)]
    assert only(run(reader, "requests", "sum", "rate")) == [(BASE, 1.5), (BASE + 60, 0.7)]
    assert only(run(reader, "requests", "sum", "max")) == [(BASE, 190.0), (BASE + 60, 42.0)]


def test_an_up_down_counter_may_go_down_without_counting_as_a_restart(
    store: tuple[StoreWriter, StoreReader],
) -> None:
    writer, reader = store
    common = {"name": "queue", "AggregationTemporality": 2, "IsMonotonic": False, "start": BASE - 600}
    points = [
        {**common, "time": BASE - 5, "Value": 10.0},
        {**common, "time": BASE + 5, "Value": 4.0},
        {**common, "time": BASE + 65, "Value": 7.0},
    ]
    writer.insert("metrics_sum", metric_rows("metrics_sum", points))
    assert only(run(reader, "queue", "sum", "sum")) == [(BASE, -6.0), (BASE + 60, 3.0)]


def test_delta_counters_add_up_per_step(store: tuple[StoreWriter, StoreReader]) -> None:
    writer, reader = store
    common = {"name": "hits", "AggregationTemporality": 1, "IsMonotonic": True}
    points = [
        {**common, "time": BASE + 10, "start": BASE, "Value": 9.0, "service": "a"},
        {**common, "time": BASE + 20, "start": BASE + 10, "Value": 3.0, "service": "b"},
        {**common, "time": BASE + 130, "start": BASE + 120, "Value": 6.0, "service": "a"},
    ]
    writer.insert("metrics_sum", metric_rows("metrics_sum", points))
    assert only(run(reader, "hits", "sum", "sum")) == [(BASE, 12.0), (BASE + 120, 6.0)]
    assert only(run(reader, "hits", "sum", "rate")) == [(BASE, 0.2), (BASE + 120, 0.1)]
    by_service = run(reader, "hits", "sum", "sum", group_by=("service",))
    assert [(s.labels, s.points) for s in by_service] == [
        ({"service": "a"}, [(BASE, 9.0), (BASE + 120, 6.0)]),
        ({"service": "b"}, [(BASE, 3.0)]),
    ]


def test_histogram_quantiles_interpolate_within_buckets_of_increases(
    store: tuple[StoreWriter, StoreReader],
) -> None:
    writer, reader = store
    bounds = [10.0, 20.0, 40.0]
    common = {"name": "latency", "AggregationTemporality": 2, "start": BASE - 600, "ExplicitBounds": bounds}
    points = [
        {**common, "time": BASE - 10, "Count": 10, "Sum": 100.0, "BucketCounts": [10, 0, 0, 0], "Min": 1.0, "Max": 9.0},
        # In the first step: 4 more in (10, 20] and 4 in (20, 40].
        {
            **common,
            "time": BASE + 30,
            "Count": 18,
            "Sum": 340.0,
            "BucketCounts": [10, 4, 4, 0],
            "Min": 1.0,
            "Max": 35.0,
        },
    ]
    writer.insert("metrics_histogram", metric_rows("metrics_histogram", points))
    # Rank 4 of 8 is the top of (10, 20]; rank 6 is halfway through (20, 35], clamped to the max of 35.
    assert only(run(reader, "latency", "histogram", "p50")) == [(BASE, 20.0)]
    assert only(run(reader, "latency", "histogram", "p95")) == [(BASE, pytest.approx(20.0 + 15.0 * 3.6 / 4))]
    assert only(run(reader, "latency", "histogram", "avg")) == [(BASE, 30.0)]
    assert only(run(reader, "latency", "histogram", "rate")) == [(BASE, 8 / 60)]
    assert only(run(reader, "latency", "histogram", "sum")) == [(BASE, 240.0)]
    assert only(run(reader, "latency", "histogram", "max")) == [(BASE, 35.0)]


def test_exponential_histogram_quantiles_from_delta_points(store: tuple[StoreWriter, StoreReader]) -> None:
    writer, reader = store
    # Scale 0: bucket i covers (2**i, 2**(i+1)]. Offset 1 puts counts in (2, 4], (4, 8], (8, 16].
    point = {
        "name": "size",
        "time": BASE + 5,
        "AggregationTemporality": 1,
        "Count": 8,
        "Sum": 50.0,
        "Scale": 0,
        "PositiveOffset": 1,
        "PositiveBucketCounts": [2, 4, 2],
    }
    writer.insert("metrics_exp_histogram", metric_rows("metrics_exp_histogram", [point]))
    assert only(run(reader, "size", "exponential_histogram", "p50")) == [(BASE, 6.0)]
    assert only(run(reader, "size", "exponential_histogram", "avg")) == [(BASE, 6.25)]


def test_summary_quantiles_extremes_and_rates(store: tuple[StoreWriter, StoreReader]) -> None:
    writer, reader = store
    common = {
        "name": "api.time",
        "AggregationTemporality": 1,
        "ValueAtQuantiles.Quantile": [0.0, 0.5, 0.99, 1.0],
    }
    points = [
        {**common, "time": BASE + 10, "Count": 4, "Sum": 40.0, "ValueAtQuantiles.Value": [2.0, 8.0, 20.0, 21.0]},
        {**common, "time": BASE + 20, "Count": 2, "Sum": 20.0, "ValueAtQuantiles.Value": [1.0, 12.0, 30.0, 31.0]},
    ]
    writer.insert("metrics_summary", metric_rows("metrics_summary", points))
    assert only(run(reader, "api.time", "summary", "p50")) == [(BASE, 10.0)]
    assert only(run(reader, "api.time", "summary", "p99")) == [(BASE, 25.0)]
    assert only(run(reader, "api.time", "summary", "min")) == [(BASE, 1.0)]
    assert only(run(reader, "api.time", "summary", "max")) == [(BASE, 31.0)]
    assert only(run(reader, "api.time", "summary", "avg")) == [(BASE, 10.0)]
    assert only(run(reader, "api.time", "summary", "rate")) == [(BASE, 0.1)]
    assert run(reader, "api.time", "summary", "p95") == []  # not a reported quantile


def test_the_catalog_lists_names_types_services_and_label_keys(store: tuple[StoreWriter, StoreReader]) -> None:
    writer, reader = store
    writer.insert(
        "metrics_gauge",
        metric_rows(
            "metrics_gauge",
            [
                {"name": "temp", "time": BASE, "service": "a", "attributes": {"room": "x"}, "MetricUnit": "Cel"},
                {"name": "temp", "time": BASE + 1, "service": "b", "attributes": {"floor": "2"}, "MetricUnit": "Cel"},
            ],
        ),
    )
    writer.insert("metrics_sum", metric_rows("metrics_sum", [{"name": "hits", "time": BASE, "service": "a"}]))
    catalog = reader.metrics(start_s=BASE - 86400, end_s=BASE + 3600)
    assert [(m.name, m.type, m.unit, m.services, m.label_keys, m.points) for m in catalog] == [
        ("hits", "sum", "", ["a"], [], 1),
        ("temp", "gauge", "Cel", ["a", "b"], ["floor", "room"], 2),
    ]
    assert [m.name for m in reader.metrics(start_s=BASE - 86400, end_s=BASE + 3600, service="b")] == ["temp"]
    assert catalog[1].last_seen_unix_nano == (BASE + 1) * 1_000_000_000
    assert reader.metric_types("temp") == ["gauge"]
    assert reader.metric_types("nothing") == []


def test_questions_that_cannot_be_answered_name_the_parameter(store: tuple[StoreWriter, StoreReader]) -> None:
    _, reader = store
    with pytest.raises(MetricQueryError) as rate:
        run(reader, "temp", "gauge", "rate")
    assert rate.value.parameter == "agg"
    with pytest.raises(MetricQueryError) as step:
        reader.metric_series(MetricQuery("temp", "gauge", "avg", 1, BASE - 86400, BASE))
    assert step.value.parameter == "step"
    assert "at most 11000 points" in str(step.value)


def test_nan_points_are_left_out(store: tuple[StoreWriter, StoreReader]) -> None:
    writer, reader = store
    points = [{"name": "g", "time": BASE + 1, "Value": math.nan}, {"name": "g", "time": BASE + 61, "Value": 1.0}]
    writer.insert("metrics_gauge", metric_rows("metrics_gauge", points))
    assert only(run(reader, "g", "gauge", "max")) == [(BASE + 60, 1.0)]
