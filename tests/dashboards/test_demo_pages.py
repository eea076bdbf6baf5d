"""The pages over the demo's traffic: what a newcomer running `vigil demo` clicks through."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page

from tests.conftest import RunningVigil
from tests.dashboards.pages import follow, table_rows
from vigil.demo import DemoTraffic, otlp_grpc_exporter_factory

REQUESTS = 60


def test_demo_traffic_reads_the_same_on_the_pages_as_in_the_api_and_clicks_through_to_a_trace(
    quiet_vigil: RunningVigil, page: Page
) -> None:
    demo = DemoTraffic(otlp_grpc_exporter_factory(quiet_vigil.otlp_grpc), seed=11, batch=False)
    demo.run_requests(REQUESTS)
    demo.shutdown()
    quiet_vigil.flush()
    api = httpx.get(f"{quiet_vigil.api}/api/v1/services", params={"since": "15m"}).json()
    expected = {s["service"]: f"{s['requests']:,}" for s in api}
    assert expected["frontend"] == str(REQUESTS)  # one front-door request, one trace

    page.goto(f"{quiet_vigil.api}/?since=15m")
    assert {row[0]: row[1] for row in table_rows(page, "#services")} == expected

    page.click("#services a:text-is('frontend')")
    assert page.url == f"{quiet_vigil.api}/services/frontend?since=15m"
    operations = table_rows(page, "#operations")
    assert sorted(row[0] for row in operations) == ["GET /", "GET /product/{id}", "POST /cart/checkout"]
    assert sum(int(row[1]) for row in operations) == REQUESTS

    page.click("#operations a:text-is('POST /cart/checkout')")
    checkouts = httpx.get(
        f"{quiet_vigil.api}/api/v1/traces",
        params={"service": "frontend", "operation": "POST /cart/checkout", "since": "15m", "limit": 50},
    ).json()
    assert len(table_rows(page, "#traces")) == len(checkouts)

    follow(page.locator("#traces tbody tr a").first)
    trace_id = page.url.rsplit("/", 1)[1]
    spans = httpx.get(f"{quiet_vigil.api}/api/v1/traces/{trace_id}").json()["spans"]
    assert page.locator("#trace-spans").inner_text() == str(len(spans))
    assert len(table_rows(page, "#waterfall")) == len(spans)
    assert page.locator("#trace-root").inner_text() == "frontend: POST /cart/checkout"
