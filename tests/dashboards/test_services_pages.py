"""The services overview and a service's page in a real browser, over spans sent with the OTel SDK."""

from __future__ import annotations

import math
import time

import httpx
from playwright.sync_api import Page

from tests.conftest import RunningVigil
from tests.dashboards.pages import chart_spec, follow, send_spans, table_rows
from tests.service_spans import SpanBuilder, shop_and_payments_spans
from vigil.dashboards.charts import plotly_time
from vigil.dashboards.pages.services import _annotations
from vigil.dashboards.timerange import TimeRange
from vigil.store.client import Client, open_client
from vigil.store.findings import Finding, FindingQuery, FindingStore
from vigil.store.migrate import migrate
from vigil.store.read import StoreReader
from vigil.store.schema import DdlContext
from vigil.store.service_edges import ServiceEdgeRollup
from vigil.store.slos import SloStore, parse_slo


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + "Z"


def send_shop_and_payments(vigil: RunningVigil) -> tuple[int, dict[str, str]]:
    """The scenario of `shop_and_payments_spans`, starting 20 minutes ago; returns its start and trace ids."""
    base = math.floor(time.time() / 60) * 60 - 1200
    spans, ids = shop_and_payments_spans(base)
    send_spans(vigil, spans)
    return base, ids


def regression_finding(service: str, started: float, ended: float | None) -> Finding:
    return Finding(
        id=f"f-{service}-{int(started)}",
        kind="service_regression",
        service=service,
        operation="POST /pay",
        signal="error_rate",
        series=f"{service}|POST /pay|error_rate",
        started_at=started,
        ended_at=ended,
        status="open" if ended is None else "closed",
        severity="critical",
        score=0.99,
        baseline=0.0,
        observed=0.5,
        unit="ratio",
        summary=f"Errors of {service} POST /pay rose to 50%",
    )


def regression(vigil: RunningVigil, service: str, started: float, ended: float | None) -> Finding:
    finding = regression_finding(service, started, ended)
    FindingStore(open_client(vigil.settings.clickhouse_url), vigil.settings.clickhouse_database).write([finding])
    return finding


def test_the_overview_shows_each_service_with_findings_and_slo_budget_and_sorts(
    quiet_vigil: RunningVigil, page: Page
) -> None:
    base, _ = send_shop_and_payments(quiet_vigil)
    regression(quiet_vigil, "shop", base + 180, None)
    client = open_client(quiet_vigil.settings.clickhouse_url)
    slos = SloStore(client, quiet_vigil.settings.clickhouse_database)
    # 90% over a day: shop's two failures in six requests spend the budget 3.33 times over, and
    # the 6h/30m page alert fires (burn 3.33 against 0.2 for a one-day window).
    slo = parse_slo("shop-availability", {"service": "shop", "objective": 90, "window": "1d"})
    # Every request within a second: this one is untouched, and shop shows the worse of the two.
    latency = parse_slo("shop-latency", {"service": "shop", "objective": 90, "kind": "latency", "threshold_ms": 1000})
    for definition in (slo, latency):
        slos.put(definition, source="api")
        slos.count_minutes(definition, base, math.floor(time.time() / 60) * 60)

    page.goto(quiet_vigil.api + "/?since=1h")
    assert table_rows(page, "#services") == [
        ["payments", "2", "0.00", "50.00%", "60.0", "120.0", "120.0", "", "", "0", "none"],
        ["shop", "6", "0.00", "33.33%", "30.0", "200.0", "200.0", "", "", "1", "-233.3% burning"],
    ]
    assert page.locator("#services tbody tr:nth-child(2) td:nth-child(9) svg.spark.bad").count() == 1
    # A line needs two points: payments' error rate has one bucket with requests.
    assert page.locator("#services svg.spark polyline").count() == 3
    budget_link = page.locator("#services tbody tr:nth-child(2) td:nth-child(11) a")
    assert budget_link.get_attribute("title") == "shop-availability, the worst of 2"
    findings_link = page.locator("#services tbody tr:nth-child(2) td:nth-child(10) a")
    assert findings_link.get_attribute("href") == "/findings?since=1h&service=shop"

    page.click("#services th:has-text('p50 ms')")
    assert [row[0] for row in table_rows(page, "#services")] == ["shop", "payments"]
    page.click("#services th:has-text('p50 ms')")
    assert [row[0] for row in table_rows(page, "#services")] == ["payments", "shop"]
    page.click("#services th:has-text('SLO budget left')")
    assert [row[0] for row in table_rows(page, "#services")] == ["shop", "payments"]

    page.click("#services >> text=payments")
    assert page.url == f"{quiet_vigil.api}/services/payments?since=1h"
    assert page.locator("h1").inner_text() == "payments"


def test_a_service_page_shows_its_operations_versions_and_red_charts_with_deploys_and_findings(
    quiet_vigil: RunningVigil, page: Page
) -> None:
    base, _ = send_shop_and_payments(quiet_vigil)
    deploy = httpx.post(
        f"{quiet_vigil.api}/api/v1/deploys", json={"service": "shop", "version": "2.0", "started_at": base + 120}
    )
    assert deploy.status_code == 201
    finding = regression(quiet_vigil, "shop", base + 180, base + 300)

    page.goto(quiet_vigil.api + "/services/shop?since=1h")
    assert page.title() == "shop · Vigil"
    summary = page.locator("#summary").inner_text().split("\n")
    assert list(zip(summary[::2], summary[1::2], strict=True)) == [
        ("Requests", "6"), ("Req/s", "0.00"), ("Error rate", "33.33%"),
        ("p50 ms", "30.0"), ("p95 ms", "200.0"), ("p99 ms", "200.0"),
    ]  # fmt: skip
    assert table_rows(page, "#operations") == [
        ["GET /cart", "4", "0.00", "25.00%", "20.0", "40.0", "40.0"],
        ["POST /pay", "2", "0.00", "50.00%", "100.0", "200.0", "200.0"],
    ]
    assert table_rows(page, "#versions") == [
        ["2.0", "3", "50.0%", "33.33%", "100.0", "200.0", "200.0", utc(base + 120), utc(base + 180)],
        ["1.0", "3", "50.0%", "33.33%", "20.0", "30.0", "30.0", utc(base), utc(base)],
    ]

    requests = chart_spec(page, "red-requests")
    (line,) = requests["data"]
    drawn = {x: y for x, y in zip(line["x"], line["y"], strict=True) if y}
    # One-minute buckets over an hour: requests per second of each minute with requests.
    assert drawn == {plotly_time(base): 0.05, plotly_time(base + 120): 0.017, plotly_time(base + 180): 0.033}
    (band,) = [shape for shape in requests["layout"]["shapes"] if shape["type"] == "rect"]
    assert (band["x0"], band["x1"], band["label"]["text"], band["fillcolor"]) == (
        plotly_time(finding.started_at),
        plotly_time(base + 300),
        "Errors of shop POST /pay rose to 50%",
        "#c62828",
    )
    (marker,) = requests["layout"]["annotations"]
    assert (marker["x"], marker["text"]) == (
        plotly_time(base + 120),
        '<a href="/deploys?since=1h&amp;service=shop">2.0</a>',
    )
    for chart_id in ("red-errors", "red-latency"):
        spec = chart_spec(page, chart_id)
        assert [a["text"] for a in spec["layout"]["annotations"]] == [marker["text"]]
        assert [s["label"]["text"] for s in spec["layout"]["shapes"] if s["type"] == "rect"] == [finding.summary]
    assert [trace["name"] for trace in chart_spec(page, "red-latency")["data"]] == ["p50", "p95", "p99"]
    versions = chart_spec(page, "version-requests")
    assert [(trace["name"], round(sum(trace["y"]), 3)) for trace in versions["data"]] == [("1.0", 0.05), ("2.0", 0.05)]

    page.click("#versions th:has-text('Version')")
    assert [row[0] for row in table_rows(page, "#versions")] == ["1.0", "2.0"]


def test_recent_errors_link_to_their_traces_and_the_header_links_to_traces_logs_and_findings(
    quiet_vigil: RunningVigil, page: Page
) -> None:
    base, ids = send_shop_and_payments(quiet_vigil)
    regression(quiet_vigil, "shop", base + 180, None)
    regression(quiet_vigil, "shop", base - 7200, None)  # open since before the hour shown: counted
    regression(quiet_vigil, "shop", base + 60, base + 120)  # closed: not counted
    regression(quiet_vigil, "payments", base + 60, None)  # another service's
    page.goto(quiet_vigil.api + "/services/shop?since=1h")
    assert table_rows(page, "#errors") == [
        [utc(base + 310).replace("Z", ".000Z"), "cleanup", "2.0", "5.00", "cleanup failed"],
        [utc(base + 191).replace("Z", ".000Z"), "POST /pay", "2.0", "200.00", "POST /pay failed"],
        [utc(base + 12).replace("Z", ".000Z"), "GET /cart", "1.0", "30.00", "GET /cart failed"],
    ]
    links = page.locator("#service-links a")
    assert links.all_inner_texts() == ["Traces", "Logs", "Open findings: 2"]
    assert [links.nth(i).get_attribute("href") for i in range(3)] == [
        "/traces?since=1h&service=shop",
        "/logs?since=1h&service=shop",
        "/findings?since=1h&service=shop",
    ]
    follow(page.locator("#errors tbody tr").first.locator("a"))
    assert page.url == f"{quiet_vigil.api}/traces/{ids['cleanup']}"
    assert page.locator("#waterfall").count() == 1


def test_open_findings_are_counted_apart_when_the_range_holds_more_findings_than_one_read_returns(
    chdb_client: Client, database: str
) -> None:
    migrate(chdb_client, DdlContext(database=database))
    end = math.floor(time.time() / 60) * 60
    limit = FindingQuery(since=0).limit
    closed = [regression_finding("shop", end - 3000 + i, end - 2900 + i) for i in range(limit)]
    FindingStore(chdb_client, database).write([regression_finding("shop", end - 7200, None), *closed])

    reader, query = StoreReader(chdb_client, database), FindingQuery(since=end - 3600, service="shop")
    findings = reader.findings(query)
    annotations = _annotations(reader, "shop", TimeRange(end - 3600, end, "1h"), [], findings, query.limit)

    # The newest findings fill the bands' read; the open one, older, is still counted.
    assert len(annotations.bands) == limit
    assert annotations.open_findings == 1


def test_dependencies_come_from_the_call_rollup_and_lead_to_the_other_service(
    quiet_vigil: RunningVigil, page: Page
) -> None:
    send_shop_and_payments(quiet_vigil)
    page.goto(quiet_vigil.api + "/services/shop?since=1h")
    assert page.locator("#no-dependencies").inner_text() == (
        "Dependencies are computed by the detector thread, which this Vigil does not run "
        "(VIGIL_DETECTORS_ENABLED=false). Run vigil detect against the same store, or enable the detectors, "
        "to see which services call shop and which it calls."
    )

    settings = quiet_vigil.settings
    ServiceEdgeRollup(open_client(settings.clickhouse_url), settings.clickhouse_database).run(time.time() + 180)
    page.reload()
    assert page.locator("#callers").count() == 0
    assert "No other service called shop." in page.locator(".dependencies").inner_text()
    assert table_rows(page, "#callees") == [["payments", "2", "50.00%", "90.0"]]

    page.click("#callees >> text=payments")
    assert page.url == f"{quiet_vigil.api}/services/payments?since=1h"
    assert table_rows(page, "#callers") == [["shop", "2", "50.00%", "90.0"]]
    assert page.locator("#callees").count() == 0


def test_with_detectors_running_an_empty_rollup_explains_how_calls_are_found(
    vigil_server: RunningVigil, page: Page
) -> None:
    base = math.floor(time.time() / 60) * 60 - 1200
    spans, _ = shop_and_payments_spans(base)
    send_spans(vigil_server, [span for span in spans if span.resource.attributes["service.name"] == "payments"])
    page.goto(vigil_server.api + "/services/payments?since=1h")
    text = page.locator("#no-dependencies").inner_text()
    assert text.startswith("No calls between payments and other services in the last 1h.")


def test_service_then_operation_then_trace(quiet_vigil: RunningVigil, page: Page) -> None:
    _, ids = send_shop_and_payments(quiet_vigil)
    page.goto(quiet_vigil.api + "/?since=1h")
    page.click("#services >> text=shop")
    assert page.url == f"{quiet_vigil.api}/services/shop?since=1h"
    page.click("#operations >> text=POST /pay")
    assert page.url == f"{quiet_vigil.api}/traces?since=1h&service=shop&operation=POST+%2Fpay"
    assert [row[1] for row in table_rows(page, "#traces")] == ["shop: POST /pay", "shop: POST /pay"]
    follow(page.locator("#traces tbody tr").first.locator("a"))
    assert page.url == f"{quiet_vigil.api}/traces/{ids['pay']}"


def test_the_time_picker_changes_the_range_shown(quiet_vigil: RunningVigil, page: Page) -> None:
    base, _ = send_shop_and_payments(quiet_vigil)
    page.goto(quiet_vigil.api + "/services/shop?since=1h")
    assert len(table_rows(page, "#operations")) == 2
    page.click("#picker >> a.range:text-is('5m')")
    assert page.url == f"{quiet_vigil.api}/services/shop?since=5m"
    assert page.locator("#empty").inner_text().startswith("shop sent no requests in the last 5m.")
    assert page.locator("#operations").count() == 0
    # The absolute range an alert link carries: only minute 0, when only 1.0 served.
    page.goto(f"{quiet_vigil.api}/services/shop?start={base}&end={base + 59}")
    assert table_rows(page, "#operations") == [["GET /cart", "3", "0.05", "33.33%", "20.0", "30.0", "30.0"]]
    assert [row[0] for row in table_rows(page, "#versions")] == ["1.0"]


def test_an_unknown_service_is_a_404_page_naming_it(quiet_vigil: RunningVigil, page: Page) -> None:
    response = page.goto(quiet_vigil.api + "/services/nope?since=1h")
    assert response is not None and response.status == 404
    assert page.locator(".error-message").inner_text() == (
        "No service named 'nope' has sent requests that Vigil still holds. "
        "Check the name, or pick the service from the Services page."
    )


def test_a_service_named_with_markup_and_a_slash_opens_escaped(quiet_vigil: RunningVigil, page: Page) -> None:
    spans = SpanBuilder()
    spans.add("<b>team/evil</b>", "<i>op</i>", start_s=time.time() - 600, ms=5, version="<i>1</i>")
    send_spans(quiet_vigil, spans.finished())
    page.goto(quiet_vigil.api + "/?since=1h")
    page.click("#services >> text=<b>team/evil</b>")
    assert page.url == f"{quiet_vigil.api}/services/%3Cb%3Eteam/evil%3C/b%3E?since=1h"
    assert page.locator("h1").inner_text() == "<b>team/evil</b>"
    assert table_rows(page, "#operations")[0][0] == "<i>op</i>"
    assert table_rows(page, "#versions")[0][0] == "<i>1</i>"
    assert page.locator("main b, main i").count() == 0
    assert [line["name"] for line in chart_spec(page, "version-requests")["data"]] == ["&lt;i&gt;1&lt;/i&gt;"]
