"""StatsD lines from the real DogStatsD and statsd clients land in the metrics tables and the API."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import pytest
import statsd
from datadog.dogstatsd import DogStatsd

from tests.conftest import RunningVigil, start_vigil, stop_vigil
from vigil.settings import load_settings


def wait_for_metrics(vigil: RunningVigil, names: set[str], timeout_s: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        vigil.flush()
        listed: list[dict[str, Any]] = httpx.get(f"{vigil.api}/api/v1/metrics").json()
        if names <= {m["name"] for m in listed} or time.monotonic() > deadline:
            return listed
        time.sleep(0.1)


def total(vigil: RunningVigil, name: str, agg: str, **params: Any) -> dict[str, float]:
    """The query's points added up per series (sends may straddle a step), keyed by the series' labels."""
    response = httpx.get(f"{vigil.api}/api/v1/metrics/query", params={"name": name, "agg": agg, **params})
    assert response.status_code == 200, response.text
    reduce = max if agg == "max" else min if agg == "min" else sum
    return {
        ",".join(f"{k}={v}" for k, v in series["labels"].items()): reduce(v for _, v in series["points"])
        for series in response.json()["series"]
    }


def test_dogstatsd_counters_gauges_and_histograms_are_queryable_per_service(vigil_server: RunningVigil) -> None:
    client = DogStatsd(host="127.0.0.1", port=vigil_server.ports.statsd, disable_telemetry=True)
    for _ in range(3):
        client.increment("orders.placed", 2, tags=["service:checkout", "route:/pay"])
    client.increment("orders.placed", 5, tags=["service:cart", "route:/add"])
    client.gauge("queue.depth", 7, tags=["service:checkout"])
    for value in range(1, 101):
        client.histogram("request.bytes", value, tags=["service:checkout"])
    client.close_socket()
    listed = wait_for_metrics(vigil_server, {"orders.placed", "queue.depth", "request.bytes"})
    catalog = {m["name"]: (m["type"], m["services"], m["label_keys"]) for m in listed}
    assert catalog == {
        "orders.placed": ("sum", ["cart", "checkout"], ["route"]),
        "queue.depth": ("gauge", ["checkout"], []),
        "request.bytes": ("summary", ["checkout"], []),
    }
    assert total(vigil_server, "orders.placed", "sum", group_by="service") == {
        "service=cart": 5.0,
        "service=checkout": 6.0,
    }
    assert total(vigil_server, "orders.placed", "sum", filter="route:/pay") == {"": 6.0}
    assert total(vigil_server, "queue.depth", "max") == {"": 7.0}
    assert total(vigil_server, "request.bytes", "sum") == {"": 5050.0}
    assert total(vigil_server, "request.bytes", "rate", step="60s")[""] * 60 == pytest.approx(100.0)
    assert total(vigil_server, "request.bytes", "max") == {"": 100.0}
    assert total(vigil_server, "request.bytes", "min") == {"": 1.0}


def test_etsy_statsd_client_lines_over_udp_and_tcp_take_the_default_service(vigil_server: RunningVigil) -> None:
    udp = statsd.StatsClient("127.0.0.1", vigil_server.ports.statsd, prefix="web")
    udp.incr("hits")
    # One datagram, so one flush interval sees the whole set and both gauge lines.
    with udp.pipeline() as pipe:
        pipe.incr("hits", 4)
        pipe.gauge("temp", 20)
        pipe.gauge("temp", -3, delta=True)
        pipe.set("users", "alice")
        pipe.set("users", "bob")
        pipe.set("users", "alice")
    udp.close()
    tcp = statsd.TCPStatsClient("127.0.0.1", vigil_server.ports.statsd, prefix="web")
    with tcp.pipeline() as pipe:
        pipe.timing("render", 12.5)
        pipe.timing("render", 7.5)
    tcp.close()
    listed = wait_for_metrics(vigil_server, {"web.hits", "web.temp", "web.users", "web.render"})
    assert {m["name"]: (m["type"], m["unit"], m["services"]) for m in listed} == {
        "web.hits": ("sum", "", ["statsd"]),
        "web.render": ("summary", "ms", ["statsd"]),
        "web.temp": ("gauge", "", ["statsd"]),
        "web.users": ("gauge", "", ["statsd"]),
    }
    assert total(vigil_server, "web.hits", "sum") == {"": 5.0}
    assert total(vigil_server, "web.temp", "min") == {"": 17.0}
    assert total(vigil_server, "web.users", "max") == {"": 2.0}
    assert total(vigil_server, "web.render", "sum") == {"": 20.0}


def test_lines_from_a_source_outside_the_allowlist_are_not_stored(vigil_settings: dict[str, Any]) -> None:
    vigil_settings["statsd_allowed_sources"] = "127.0.0.1/32"
    running, thread = start_vigil(load_settings(**vigil_settings))
    try:
        outside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        outside.bind(("127.0.0.2", 0))  # all of 127/8 is loopback on Linux
        outside.sendto(b"spoofed.count:1|c|#service:checkout", ("127.0.0.1", running.ports.statsd))
        outside.close()
        client = DogStatsd(host="127.0.0.1", port=running.ports.statsd, disable_telemetry=True)
        client.increment("allowed.count", 3, tags=["service:checkout"])
        client.close_socket()
        listed = wait_for_metrics(running, {"allowed.count"})
        assert sorted(m["name"] for m in listed) == ["allowed.count"]
        assert total(running, "allowed.count", "sum") == {"": 3.0}
    finally:
        stop_vigil(running, thread)
