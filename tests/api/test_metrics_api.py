"""The metrics API: catalog, series queries, and 422s that name the parameter."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.conftest import RunningVigil
from tests.metric_rows import metric_rows
from vigil.store.client import Client
from vigil.store.write import StoreWriter

# The start of the previous minute: every point below falls into one 60 s step of the last hour.
MINUTE = int(time.time()) // 60 * 60 - 60


@pytest.fixture
def with_points(vigil_server: RunningVigil, chdb_client: Client, database: str) -> RunningVigil:
    writer = StoreWriter(chdb_client, database)
    common = {"name": "http.requests", "AggregationTemporality": 1, "IsMonotonic": True, "MetricUnit": "{request}"}
    writer.insert(
        "metrics_sum",
        metric_rows(
            "metrics_sum",
            [
                {**common, "time": MINUTE + 10, "Value": 30.0, "service": "cart", "attributes": {"route": "/a"}},
                {**common, "time": MINUTE + 20, "Value": 12.0, "service": "cart", "attributes": {"route": "/b"}},
                {**common, "time": MINUTE + 30, "Value": 6.0, "service": "shop", "attributes": {"route": "/a"}},
            ],
        ),
    )
    writer.insert(
        "metrics_gauge",
        metric_rows("metrics_gauge", [{"name": "http.requests", "time": MINUTE + 5, "Value": 1.0}]),
    )
    writer.insert(
        "metrics_gauge",
        metric_rows("metrics_gauge", [{"name": "queue.depth", "time": MINUTE + 5, "Value": 7.0, "service": "cart"}]),
    )
    return vigil_server


def query(vigil: RunningVigil, **params: Any) -> httpx.Response:
    return httpx.get(f"{vigil.api}/api/v1/metrics/query", params=params)


def test_the_catalog_lists_each_metric_with_its_type_services_and_label_keys(with_points: RunningVigil) -> None:
    response = httpx.get(f"{with_points.api}/api/v1/metrics")
    assert response.status_code == 200
    listed = [(m["name"], m["type"], m["unit"], m["services"], m["label_keys"], m["points"]) for m in response.json()]
    assert listed == [
        ("http.requests", "gauge", "", ["svc"], [], 1),
        ("http.requests", "sum", "{request}", ["cart", "shop"], ["route"], 3),
        ("queue.depth", "gauge", "", ["cart"], [], 1),
    ]
    only_shop = httpx.get(f"{with_points.api}/api/v1/metrics", params={"service": "shop"}).json()
    assert [m["name"] for m in only_shop] == ["http.requests"]


def test_a_query_groups_filters_and_rates_per_step(with_points: RunningVigil) -> None:
    response = query(with_points, name="http.requests", type="sum", agg="rate", group_by="service", step="60s")
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["type"], body["agg"], body["step_s"]) == ("http.requests", "sum", "rate", 60)
    assert body["series"] == [
        {"labels": {"service": "cart"}, "points": [[MINUTE, 0.7]]},
        {"labels": {"service": "shop"}, "points": [[MINUTE, 0.1]]},
    ]
    filtered = query(
        with_points, name="http.requests", type="sum", agg="sum", filter=["route:/a", "service:cart"]
    ).json()
    assert filtered["series"] == [{"labels": {}, "points": [[MINUTE, 30.0]]}]
    by_route = query(with_points, name="http.requests", type="sum", agg="sum", group_by=["service", "route"]).json()
    assert [s["labels"] for s in by_route["series"]] == [
        {"service": "cart", "route": "/a"},
        {"service": "cart", "route": "/b"},
        {"service": "shop", "route": "/a"},
    ]


def test_a_name_with_one_type_needs_no_type(with_points: RunningVigil) -> None:
    body = query(with_points, name="queue.depth", agg="max").json()
    assert (body["type"], body["series"]) == ("gauge", [{"labels": {}, "points": [[MINUTE, 7.0]]}])


@pytest.mark.parametrize(
    ("params", "parameter", "hint"),
    [
        ({}, "name", "Field required"),
        ({"name": "queue.depth", "agg": "median"}, "agg", "avg, sum, max, min, p50, p95, p99, rate"),
        ({"name": "queue.depth", "agg": "rate"}, "agg", "for a gauge"),
        ({"name": "queue.depth", "step": "soon"}, "step", "a duration such as 10s"),
        ({"name": "queue.depth", "step": "500ms"}, "step", "at least 1s"),
        ({"name": "queue.depth", "step": "1s", "since": "7d"}, "step", "at most 11000 points"),
        ({"name": "queue.depth", "since": "forever"}, "since", "a duration such as 15m"),
        ({"name": "queue.depth", "filter": "route"}, "filter", "key:value"),
        ({"name": "queue.depth", "group_by": "service,"}, "group_by", "comma-separated label keys"),
        ({"name": "no.such.metric"}, "name", "the name of a recorded metric"),
        ({"name": "http.requests"}, "type", "has several types"),
        ({"name": "http.requests", "type": "histogram"}, "type", "one of gauge, sum"),
    ],
)
def test_bad_parameters_get_422_naming_the_parameter(
    with_points: RunningVigil, params: dict[str, Any], parameter: str, hint: str
) -> None:
    response = query(with_points, **params)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", parameter]
    assert hint in error["msg"]
