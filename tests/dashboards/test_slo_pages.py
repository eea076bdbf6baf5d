"""The SLOs page in a real browser: SLOs defined through the API, counted from SDK spans."""

from __future__ import annotations

import time

import httpx
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from playwright.sync_api import Page

from tests.conftest import RunningVigil
from tests.dashboards.pages import chart_spec, send_spans, table_rows
from vigil.dashboards.charts import plotly_time
from vigil.detectors.slo import SloCounter
from vigil.store.client import open_client


def start_well_inside_a_minute() -> None:
    """Windows end at the current minute: wait out a minute about to end, so the test's minute holds."""
    if time.time() % 60 > 40:
        time.sleep(60 - time.time() % 60 + 0.5)


def send_checkout_requests(vigil: RunningVigil) -> int:
    """500 requests to checkout over the 25 minutes before this minute, 20 a minute; in the last
    10 minutes every other one fails: 100 bad. Returns this minute."""
    now_minute = int(time.time()) // 60 * 60
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("shop")
    for minute in range(25):
        for i in range(20):
            begin = int((now_minute - 1500 + 60 * minute + 2 * i) * 1e9)
            span = tracer.start_span("POST /pay", kind=SpanKind.SERVER, start_time=begin)
            if minute >= 15 and i % 2 == 0:
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=begin + 50_000_000)
    provider.shutdown()
    send_spans(vigil, list(memory.get_finished_spans()))
    return now_minute


def count_minutes(vigil: RunningVigil, until: int) -> None:
    """What the detector thread does every few seconds in `vigil serve`: count closed minutes."""
    client = open_client(vigil.settings.clickhouse_url)
    SloCounter(client, vigil.settings.clickhouse_database, lookback_s=7 * 86400).count_until(until)


def test_without_slos_the_page_shows_how_to_define_one(quiet_vigil: RunningVigil, page: Page) -> None:
    page.goto(quiet_vigil.api + "/slos")
    assert page.title() == "SLOs · Vigil"
    text = page.locator("#empty").inner_text()
    assert "No SLOs are defined yet." in text
    assert "Define them in a YAML file named by VIGIL_SLO_FILE (read at each start):" in text
    assert "  checkout-availability:\n    service: checkout\n    objective: 99.9" in text
    assert f"curl -X PUT http://127.0.0.1:{quiet_vigil.ports.http}/api/v1/slos/checkout-availability" in text


def test_a_burning_slo_shows_its_exact_budget_burn_rates_page_state_and_burn_down(
    quiet_vigil: RunningVigil, page: Page
) -> None:
    api = f"{quiet_vigil.api}/api/v1/slos"
    availability = {"service": "checkout", "objective": 99.9, "window": "30d", "description": "<b>pay</b>"}
    assert httpx.put(f"{api}/checkout-availability", json=availability).status_code == 200
    latency = {"service": "search", "kind": "latency", "threshold_ms": 200, "objective": 99, "window": "7d"}
    assert httpx.put(f"{api}/search-latency", json=latency).status_code == 200
    start_well_inside_a_minute()
    now_minute = send_checkout_requests(quiet_vigil)
    count_minutes(quiet_vigil, now_minute)

    page.goto(f"{quiet_vigil.api}/slos?start={now_minute - 900}&end={now_minute}")
    # 100 bad of 500 against 0.1% allowed (0.5 requests): the budget is spent 200 times over.
    # Burn rates: 50% errors in the last 5 minutes is 500x; 100/500 over every longer window is 200x.
    # The last 15 minutes hold 300 requests, 100 of them bad.
    assert table_rows(page, "#slos") == [
        ["checkout-availability", "checkout", "99.9%", "30d", "80.000%", "-19900.0%", "-99.5 of 0.5",
         "-8,596.8 of 43.2", "500.00", "200.00", "200.00", "200.00", "200.00", "200.00", "200.00", "page", "66.667%"],
        ["search-latency", "search", "99% ≤ 200 ms", "7d", "n/a", "100.0%", "0.0 of 0.0", "100.8 of 100.8",
         "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "ok", "n/a"],
    ]  # fmt: skip
    assert page.locator("#slos thead th").all_inner_texts()[8:15] == [
        "Burn 5m", "Burn 30m", "Burn 1h", "Burn 2h", "Burn 6h", "Burn 1d", "Burn 3d",
    ]  # fmt: skip
    # The description is shown as text, never as markup.
    assert page.locator("#slos a[title='<b>pay</b>']").count() == 1
    assert page.locator("#slos b").count() == 0
    assert page.locator("#burndowns .hint").first.inner_text() == (
        "Firing: page 1h/5m, page 6h/30m, ticket 1d/2h, ticket 3d/6h"
    )

    spec = chart_spec(page, "burndown-1")
    (line,) = spec["data"]
    # Hourly points through the 30 days, then the last counted minute: untouched until the errors began.
    window_start = now_minute - 30 * 86400
    assert line["x"] == [plotly_time(window_start + 3600 * k) for k in range(720)] + [plotly_time(now_minute)]
    assert line["y"] == [100.0] * 720 + [-19900.0]
    assert spec["layout"]["xaxis"]["range"] == [plotly_time(window_start), plotly_time(now_minute)]
    assert chart_spec(page, "burndown-2")["data"][0]["y"] == [100.0] * (7 * 24 + 1)

    page.click("#slos a:text-is('checkout')")
    assert page.url == f"{quiet_vigil.api}/services/checkout?start={now_minute - 900}&end={now_minute}"
