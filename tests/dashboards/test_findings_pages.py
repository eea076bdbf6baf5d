"""The findings feed and a finding's page in a real browser, over findings as the detectors write them."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from playwright.sync_api import Page

from tests.conftest import RunningVigil
from tests.dashboards.pages import follow, table_rows
from vigil.store.client import open_client
from vigil.store.findings import AttributeShare, Finding, FindingStore

TRACE_A = "0af7651916cd43dd8448eb211c80319c"
TRACE_B = "5b8efff798038103d269b633813fc60c"


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + "Z"


def finding(name: str, started: float, **fields: Any) -> Finding:
    values: dict[str, Any] = {
        "id": f"f-{name}",
        "kind": "service_regression",
        "service": "checkout",
        "operation": "POST /pay",
        "signal": "latency_p95",
        "series": f'["checkout","POST /pay","{name}"]',
        "started_at": started,
        "ended_at": None,
        "status": "open",
        "severity": "critical",
        "score": 0.97,
        "baseline": 180.0,
        "observed": 1240.0,
        "unit": "ms",
        "summary": f"{name} rose from 180 ms to 1,240 ms.",
    }
    return Finding(**(values | fields))


class Findings:
    """Three findings written as the detectors write them: an open regression of checkout after a
    reported deploy, a log pattern of orders that resolved, and one that ended hours ago."""

    def __init__(self, vigil: RunningVigil) -> None:
        self.now = float(int(time.time()))
        self.regression_start = self.now - 630
        deploy = httpx.post(
            f"{vigil.api}/api/v1/deploys",
            json={"service": "checkout", "version": "1.4.2", "started_at": self.regression_start - 300},
        )
        assert deploy.status_code == 201
        self.deploy_id = deploy.json()["id"]
        self.regression = finding(
            "latency",
            self.regression_start,
            summary="p95 of POST /pay rose to <b>1,240 ms</b><script>window.injected = 1</script>",
            deploy_id=self.deploy_id,
            exemplar_trace_ids=(TRACE_A, TRACE_B),
            top_attributes=(AttributeShare("cloud.region", "eu-west-1", 0.9, 0.25),),
        )
        self.pattern_start = self.now - 1800
        self.pattern = finding(
            "pattern",
            self.pattern_start,
            kind="log_pattern",
            service="orders",
            operation="payment for order A-<NUM> failed",
            signal="new_template",
            severity="warning",
            status="closed",
            ended_at=self.pattern_start + 600,
            unit="lines/min",
            summary="New log pattern in orders.",
        )
        old = finding("old", self.now - 3 * 3600, status="closed", ended_at=self.now - 3 * 3600 + 600)
        client = open_client(vigil.settings.clickhouse_url)
        FindingStore(client, vigil.settings.clickhouse_database).write([self.regression, self.pattern, old])

    def regression_row(self) -> list[str]:
        return [
            "critical",
            "service_regression",
            "checkout POST /pay",
            "p95 of POST /pay rose to <b>1,240 ms</b><script>window.injected = 1</script>",
            utc(self.regression_start),
            "open for 10m",
            "1.4.2 5m before",
            "0af76519 5b8efff7",
        ]

    def pattern_row(self) -> list[str]:
        return [
            "warning",
            "log_pattern",
            "orders payment for order A-<NUM> failed",
            "New log pattern in orders.",
            utc(self.pattern_start),
            f"resolved {utc(self.pattern_start + 600)} after 10m",
            "none",
            "",
        ]


def test_findings_in_range_are_listed_newest_first_with_their_deploy_and_evidence(
    quiet_vigil: RunningVigil, page: Page
) -> None:
    found = Findings(quiet_vigil)
    page.goto(quiet_vigil.api + "/findings?since=1h")
    assert table_rows(page, "#findings") == [found.regression_row(), found.pattern_row()]
    # Markup in a summary is text: no element made of it, no script run.
    assert page.locator("#findings b, #findings script").count() == 0
    assert page.evaluate("window.injected") is None
    assert page.locator("#findings a.trace").evaluate_all("links => links.map(a => a.getAttribute('href'))") == [
        f"/traces/{TRACE_A}",
        f"/traces/{TRACE_B}",
    ]
    deploy_link = page.locator("#findings a.deploy").get_attribute("href")
    at = int(found.regression_start - 300)
    assert deploy_link == f"/deploys?service=checkout&start={at - 1800}&end={at + 1800}"

    # A resolved finding links to its service over its whole life, 15 minutes either side.
    follow(page.locator(f"#finding-{found.pattern.id} a.service"))
    start, end = int(found.pattern_start - 900), int(found.pattern_start + 600 + 900)
    assert page.url == f"{quiet_vigil.api}/services/orders?start={start}&end={end}"


def test_an_open_finding_links_to_its_service_until_now(quiet_vigil: RunningVigil, page: Page) -> None:
    found = Findings(quiet_vigil)
    before = time.time()
    page.goto(quiet_vigil.api + "/findings?since=1h")
    after = time.time()
    href = page.locator(f"#finding-{found.regression.id} a.service").get_attribute("href") or ""
    url = urlsplit(href)
    assert url.path == "/services/checkout"
    query = {key: int(values[0]) for key, values in parse_qs(url.query).items()}
    assert query["start"] == int(found.regression_start - 900)
    assert int(before + 900) <= query["end"] <= int(after + 900)


def test_filters_stay_in_the_url_and_narrow_the_feed(quiet_vigil: RunningVigil, page: Page) -> None:
    found = Findings(quiet_vigil)
    page.goto(quiet_vigil.api + "/findings?since=1h")
    page.fill("#finding-filters input[name=service]", "orders")
    page.click("#finding-filters button")
    assert page.url == f"{quiet_vigil.api}/findings?since=1h&service=orders&kind=&status="
    assert table_rows(page, "#findings") == [found.pattern_row()]

    page.goto(quiet_vigil.api + "/findings?since=1h&status=open")
    assert table_rows(page, "#findings") == [found.regression_row()]
    page.goto(quiet_vigil.api + "/findings?since=1h&kind=service_regression")
    assert table_rows(page, "#findings") == [found.regression_row()]
    # The range picker keeps the filter: six hours reach the regression of three hours ago.
    page.click("#picker a.range:text-is('6h')")
    assert page.url == f"{quiet_vigil.api}/findings?since=6h&kind=service_regression"
    summaries = [row[3] for row in table_rows(page, "#findings")]
    assert summaries == [found.regression.summary, "old rose from 180 ms to 1,240 ms."]

    page.goto(quiet_vigil.api + "/findings?since=1h&kind=log_pattern&status=resolved")
    assert table_rows(page, "#findings") == [found.pattern_row()]
    page.goto(quiet_vigil.api + "/findings?since=1h&kind=network")
    assert page.locator("#empty").inner_text().startswith("No findings match these filters in the last 1h.")


def test_a_finding_before_the_range_ends_is_not_one_after_it(quiet_vigil: RunningVigil, page: Page) -> None:
    found = Findings(quiet_vigil)
    start, end = int(found.pattern_start - 60), int(found.pattern_start + 60)
    page.goto(f"{quiet_vigil.api}/findings?start={start}&end={end}")
    assert table_rows(page, "#findings") == [found.pattern_row()]


def test_a_finding_page_shows_everything_it_carries(quiet_vigil: RunningVigil, page: Page) -> None:
    found = Findings(quiet_vigil)
    page.goto(quiet_vigil.api + "/findings?since=1h")
    follow(page.locator(f"#finding-{found.regression.id} a.summary"))
    assert page.url == f"{quiet_vigil.api}/findings/f-latency"
    assert page.title() == "Finding f-latency · Vigil"
    details = dict(
        zip(
            page.locator("#finding-details th").all_inner_texts(),
            page.locator("#finding-details td").all_inner_texts(),
            strict=True,
        )
    )
    assert details == {
        "Id": "f-latency",
        "Kind": "service_regression",
        "Service": "checkout",
        "Operation": "POST /pay",
        "Signal": "latency_p95",
        "Series": '["checkout","POST /pay","latency"]',
        "Started": utc(found.regression_start),
        "Status": "open for 10m",
        "Baseline": "180 ms",
        "Observed": "1,240 ms",
        "Score": "0.970",
        "Nearest deploy": "1.4.2 5m before",
    }
    assert page.locator("#exemplars a").evaluate_all("links => links.map(a => a.getAttribute('href'))") == [
        f"/traces/{TRACE_A}",
        f"/traces/{TRACE_B}",
    ]
    assert table_rows(page, "#top-attributes") == [["cloud.region", "eu-west-1", "90.0%", "25.0%"]]
    assert page.locator("#finding-summary").inner_text() == (
        "critical p95 of POST /pay rose to <b>1,240 ms</b><script>window.injected = 1</script>"
    )
    assert page.evaluate("window.injected") is None


def test_an_unknown_finding_is_a_404_page(quiet_vigil: RunningVigil, page: Page) -> None:
    response = page.goto(quiet_vigil.api + "/findings/f-nope")
    assert response is not None and response.status == 404
    assert page.locator(".error-message").inner_text() == (
        "There is no finding with id 'f-nope'. Findings are listed on the Findings page."
    )


def test_a_bad_status_filter_names_the_accepted_ones(quiet_vigil: RunningVigil, page: Page) -> None:
    response = page.goto(quiet_vigil.api + "/findings?status=closed")
    assert response is not None and response.status == 400
    assert page.locator(".error-message").inner_text() == "status='closed' is not a status; use open or resolved."
