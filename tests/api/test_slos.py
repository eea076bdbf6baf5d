"""SLOs end to end: defined by file and API, counted from SDK spans, error budgets, burn findings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.conftest import RunningVigil, start_vigil, stop_vigil
from vigil.detectors.runner import DetectorRunner
from vigil.detectors.slo import SloBurn, SloCounter
from vigil.errors import ConfigError
from vigil.settings import load_settings
from vigil.store.client import open_client
from vigil.store.findings import FindingStore


@pytest.fixture
def vigil(vigil_settings: dict[str, Any]) -> Iterator[RunningVigil]:
    running, thread = start_vigil(load_settings(**vigil_settings, detectors_enabled=False))
    try:
        yield running
    finally:
        stop_vigil(running, thread)


def send_requests(vigil: RunningVigil) -> int:
    """600 requests to checkout over the 30 minutes before this minute, 20 a minute: alternately 50 ms
    and 150 ms; in the last 10 minutes every other request fails (HTTP 503). Returns this minute."""
    now_minute = int(time.time()) // 60 * 60
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    exporter = OTLPSpanExporter(endpoint=vigil.otlp_grpc, insecure=True)
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=4096, max_export_batch_size=1024))
    tracer = provider.get_tracer("shop")
    for minute in range(30):
        for i in range(20):
            begin = int((now_minute - 1800 + 60 * minute + 2 * i) * 1e9)
            failing = minute >= 20 and i % 2 == 0
            span = tracer.start_span(
                "POST /pay",
                kind=SpanKind.SERVER,
                start_time=begin,
                attributes={"http.response.status_code": 503 if failing else 200},
            )
            if failing:
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=begin + (50_000_000 if i % 2 else 150_000_000))
    provider.shutdown()
    vigil.flush()
    return now_minute


def put(vigil: RunningVigil, name: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.put(f"{vigil.api}/api/v1/slos/{name}", json=body)


def count(vigil: RunningVigil, until: int) -> None:
    client = open_client(vigil.settings.clickhouse_url)
    SloCounter(client, vigil.settings.clickhouse_database, lookback_s=7 * 86400).count_until(until)


def test_an_availability_and_a_latency_slo_report_exact_budgets_and_burn_rates(vigil: RunningVigil) -> None:
    assert (
        put(vigil, "checkout-availability", {"service": "checkout", "objective": 99.9, "window": "30d"}).status_code
        == 200
    )
    latency = {
        "service": "checkout",
        "operation": "POST /pay",
        "kind": "latency",
        "threshold_ms": 100,
        "objective": 50,
        "window": "28d",
    }
    assert put(vigil, "pay-latency", latency).status_code == 200
    now_minute = send_requests(vigil)
    count(vigil, now_minute)

    slos = {s["name"]: s for s in httpx.get(f"{vigil.api}/api/v1/slos").json()}
    availability = slos["checkout-availability"]
    assert (availability["good"], availability["total"]) == (500, 600)
    assert availability["sli_current"] == pytest.approx(500 / 600)
    # 100 bad of 600 against 0.1% allowed: the budget is spent 166.7 times over.
    assert availability["error_budget_remaining"] == pytest.approx(1 - 100 / 0.6)
    burns = availability["burn_rates"]
    # Windows end at the current minute: should a minute pass during the test, the 30m window
    # loses a clean minute (its burn rises a little); the others hold all the traffic or only errors.
    assert burns.pop("5m") == pytest.approx(500.0)
    assert 100 / 600 / 0.001 <= burns.pop("30m") <= 100 / 540 / 0.001
    assert burns == pytest.approx(dict.fromkeys(["1h", "2h", "6h", "1d", "3d"], 100 / 600 / 0.001))
    assert availability["firing"] == ["page 1h/5m", "page 6h/30m", "ticket 1d/2h", "ticket 3d/6h"]

    pay = slos["pay-latency"]
    assert (pay["good"], pay["total"], pay["sli_current"]) == (300, 600, 0.5)
    assert pay["error_budget_remaining"] == 0.0  # half slow against an objective of 50%
    assert pay["burn_rates"]["1h"] == 1.0
    assert [a["threshold"] for a in pay["alerts"]] == pytest.approx([13.44, 5.6, 2.8, 28 * 0.1 / 3])

    one = httpx.get(f"{vigil.api}/api/v1/slos/checkout-availability").json()
    assert one["burndown"][-1][1] == pytest.approx(1 - 100 / 0.6)
    assert one["burndown"][0][1] == 1.0


def test_http_status_availability_counts_5xx_as_bad(vigil: RunningVigil) -> None:
    put(vigil, "by-http", {"service": "checkout", "objective": 99, "availability_by": "http_status"})
    count(vigil, send_requests(vigil))
    [slo] = httpx.get(f"{vigil.api}/api/v1/slos").json()
    assert (slo["good"], slo["total"], slo["availability_by"]) == (500, 600, "http_status")


def test_a_burning_slo_becomes_one_page_finding(vigil: RunningVigil) -> None:
    put(vigil, "checkout-availability", {"service": "checkout", "objective": 99.9})
    now_minute = send_requests(vigil)
    client = open_client(vigil.settings.clickhouse_url)
    database = vigil.settings.clickhouse_database
    counter = SloCounter(client, database, lookback_s=7 * 86400)
    runner = DetectorRunner(
        SloBurn(client, database, counter), FindingStore(client, database), grace=0.0, clock=lambda: now_minute
    )
    runner.reset(now_minute - 3 * 3600)
    runner.run()

    findings = httpx.get(f"{vigil.api}/api/v1/findings", params={"since": "6h", "kind": "slo_burn"}).json()
    assert sorted((f["signal"], f["severity"], f["status"], f["service"], f["operation"]) for f in findings) == [
        ("slo_burn_page", "critical", "open", "checkout", "checkout-availability"),
        ("slo_burn_ticket", "warning", "open", "checkout", "checkout-availability"),
    ]
    page = next(f for f in findings if f["signal"] == "slo_burn_page")
    # The errors began at minute 20 of 30: the page fires in that first minute.
    assert page["started_at"] == now_minute - 600
    assert page["summary"].startswith("SLO checkout-availability (99.9% over 30d) is burning its error budget at ")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"objective": 99.9}, "SLO 'x': service must be a non-empty string"),
        ({"service": "a", "objective": 100}, "objective must be a percentage between 0 and 100 (e.g. 99.9)"),
        ({"service": "a", "objective": 99, "window": "2y"}, "window: '2y' is not a duration such as 5m, 1h or 30d"),
        ({"service": "a", "objective": 99, "kind": "latency"}, "a latency SLO needs threshold_ms, a positive number"),
        ({"service": "a", "objective": 99, "colour": "red"}, "SLO 'x': unknown field 'colour'; expected some of"),
    ],
)  # fmt: skip
def test_bad_slo_definitions_get_a_422_with_the_reason(vigil: RunningVigil, body: dict[str, Any], message: str) -> None:
    response = put(vigil, "x", body)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert message in error["msg"]


def test_slos_are_deleted_and_unknown_ones_are_404(vigil: RunningVigil) -> None:
    put(vigil, "gone", {"service": "a", "objective": 99})
    assert httpx.delete(f"{vigil.api}/api/v1/slos/gone").status_code == 204
    assert httpx.get(f"{vigil.api}/api/v1/slos").json() == []
    assert httpx.get(f"{vigil.api}/api/v1/slos/gone").status_code == 404


def test_the_slo_file_defines_slos_and_a_broken_one_stops_start_up_with_its_line(
    vigil_settings: dict[str, Any], tmp_path: Path
) -> None:
    slo_file = tmp_path / "slos.yaml"
    slo_file.write_text(
        "slos:\n  api-availability:\n    service: api\n    objective: 99.5\n    window: 28d\n"
        "  api-latency:\n    service: api\n    kind: latency\n    threshold_ms: 250\n    objective: 99\n"
    )
    running, thread = start_vigil(load_settings(**vigil_settings, slo_file=str(slo_file), detectors_enabled=False))
    try:
        names = [(s["name"], s["objective"], s["window"]) for s in httpx.get(f"{running.api}/api/v1/slos").json()]
        assert names == [("api-availability", 99.5, "28d"), ("api-latency", 99.0, "30d")]
    finally:
        stop_vigil(running, thread)

    slo_file.write_text(
        "slos:\n  api-availability:\n    service: api\n    objective: 99.5\n"
        "  api-latency:\n    service: api\n    kind: latency\n    objective: 99\n"
    )
    with pytest.raises(ConfigError) as raised:
        start_vigil(load_settings(**vigil_settings, slo_file=str(slo_file), detectors_enabled=False))
    assert str(raised.value) == (
        f"{slo_file}:5: SLO 'api-latency': a latency SLO needs threshold_ms, a positive number of milliseconds"
    )
