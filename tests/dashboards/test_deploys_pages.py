"""The deploys timeline and a canary analysis's page in a real browser, over deploys reported
through the API, a deploy detected from SDK spans, and a canary analysis judged on real spans."""

from __future__ import annotations

import time
from typing import Any

import httpx
from playwright.sync_api import Page

from tests.api.test_canary import iso, past_window
from tests.api.test_canary import send_versions as send_canary_and_baseline
from tests.api.test_deploys import send_versions as send_each_version
from tests.conftest import RunningVigil
from tests.dashboards.pages import follow, table_rows
from vigil.store.deploys import detected_deploy_id


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + "Z"


def hrefs(page: Page, selector: str) -> list[str]:
    links: list[str] = page.locator(selector).evaluate_all("links => links.map(a => a.getAttribute('href'))")
    return links


def ask_canary(vigil: RunningVigil, start: float) -> str:
    body = {"service": "pay", "baseline_version": "1.0", "canary_version": "2.0", "start": iso(start)}
    created = httpx.post(f"{vigil.api}/api/v1/canary/analyses", json=body | {"duration": "10m"}, timeout=30)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


class Deploys:
    """pay 2.0 deployed as a canary (reported, with a commit, a pipeline link and a description) and
    judged slower than 1.0 on 300 requests per version and operation; search 1.1 detected from its
    spans; an older report of pay whose link is not a web address."""

    def __init__(self, vigil: RunningVigil) -> None:
        self.minute = int(time.time()) // 60 * 60
        self.start = past_window()
        send_canary_and_baseline(vigil, "pay", self.start, requests=300, slowdown=1.6)
        send_each_version(vigil, "search", [("1.0", self.minute - 1800), ("1.1", self.minute - 300)])
        report = {
            "service": "pay",
            "version": "2.0",
            "kind": "canary",
            "commit": "9f2c1e0",
            "url": "https://ci.example.com/runs/7",
            "description": "<i>canary</i> of the new pricing",
            "started_at": self.start,
        }
        self.deploy_id = self._report(vigil, report)
        self.older_at = self.start - 1200
        older = {"service": "pay", "version": "1.0", "url": "javascript:alert(1)", "started_at": self.older_at}
        self.older_id = self._report(vigil, older)
        self.analysis_id = ask_canary(vigil, self.start)
        # The pipeline polls the verdict: judged for good, as its window closed minutes ago. The
        # first poll judges it, so it waits as long as `vigil canary gate` does (30 s).
        analysis_url = f"{vigil.api}/api/v1/canary/analyses/{self.analysis_id}"
        self.analysis: dict[str, Any] = httpx.get(analysis_url, timeout=30).json()
        assert (self.analysis["status"], self.analysis["verdict"]) == ("done", "FAIL")

    @staticmethod
    def _report(vigil: RunningVigil, body: dict[str, Any]) -> str:
        response = httpx.post(f"{vigil.api}/api/v1/deploys", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def pay_row(self) -> list[str]:
        score = self.analysis["score"]
        return [
            utc(self.start), "pay", "2.0", "production", "canary", "reported",
            "9f2c1e0 pipeline <i>canary</i> of the new pricing", f"FAIL {score:.0f} 2.0 vs 1.0",
        ]  # fmt: skip

    def search_row(self) -> list[str]:
        return [
            utc(self.minute - 300), "search", "1.1", "", "unknown", "detected", "version 1.1 first served requests", "",
        ]  # fmt: skip

    def older_row(self) -> list[str]:
        return [utc(self.older_at), "pay", "1.0", "production", "full", "reported", "javascript:alert(1)", ""]


def test_deploys_in_range_are_listed_newest_first_with_their_canary_verdicts(
    quiet_vigil: RunningVigil, page: Page
) -> None:
    deploys = Deploys(quiet_vigil)
    page.goto(quiet_vigil.api + "/deploys?since=1h")
    assert table_rows(page, "#deploys") == [deploys.search_row(), deploys.pay_row(), deploys.older_row()]
    # A report's text is text, and only a web address becomes a link.
    assert page.locator("#deploys i").count() == 0
    assert hrefs(page, "#deploys a.pipeline") == ["https://ci.example.com/runs/7"]
    assert hrefs(page, "#deploys a.canary") == [f"/canary/{deploys.analysis_id}"]
    assert hrefs(page, f"#deploy-{detected_deploy_id('search', '1.1')} a.service") == [
        f"/services/search?start={deploys.minute - 300 - 1800}&end={deploys.minute - 300 + 1800}"
    ]

    follow(page.locator(f"#deploy-{deploys.deploy_id} a.service"))
    start = int(deploys.start)
    assert page.url == f"{quiet_vigil.api}/services/pay?start={start - 1800}&end={start + 1800}"


def test_the_service_filter_stays_in_the_url(quiet_vigil: RunningVigil, page: Page) -> None:
    deploys = Deploys(quiet_vigil)
    page.goto(quiet_vigil.api + "/deploys?since=1h")
    page.fill("#deploy-filters input[name=service]", "pay")
    page.click("#deploy-filters button")
    assert page.url == f"{quiet_vigil.api}/deploys?since=1h&service=pay"
    assert table_rows(page, "#deploys") == [deploys.pay_row(), deploys.older_row()]
    page.click("#picker a.range:text-is('15m')")
    assert page.url == f"{quiet_vigil.api}/deploys?since=15m&service=pay"
    assert table_rows(page, "#deploys") == [deploys.pay_row()]


def test_an_analysis_still_running_shows_beside_its_deploy(quiet_vigil: RunningVigil, page: Page) -> None:
    deploys = Deploys(quiet_vigil)
    running = ask_canary(quiet_vigil, time.time() - 60)
    page.goto(quiet_vigil.api + "/deploys?since=1h&service=pay")
    assert table_rows(page, "#deploys")[0][7] == f"running 2.0 vs 1.0\nFAIL {deploys.analysis['score']:.0f} 2.0 vs 1.0"
    assert hrefs(page, "#deploys a.canary") == [f"/canary/{running}", f"/canary/{deploys.analysis_id}"]


def arm_figures(check: dict[str, Any], arm: str) -> str:
    figures = check[arm]
    if check["kind"] == "error_rate":
        return f"{figures['n']:,} requests, {figures['error_rate']:.2%} errors"
    quantiles = ", ".join(f"{q} {figures[q + '_ms']:,.1f} ms" for q in ("p50", "p95", "p99"))
    return f"n={figures['n']:,}, {quantiles}"


def expected_check_row(check: dict[str, Any]) -> list[str]:
    effect = check["effect"]
    return [
        check["name"] + (" operation" if check["scope"] == "operation" else ""),
        check["kind"],
        arm_figures(check, "baseline"),
        arm_figures(check, "canary"),
        f"{effect * 100:+.2f} pp" if check["kind"] == "error_rate" else f"{effect:+.1%}",
        check["method"],
        f"{check['p_value']:.2g}",
        f"{check['adjusted_p_value']:.2g}",
        check["result"],
        check["reason"],
    ]


def test_the_canary_page_shows_the_verdict_every_check_and_the_exemplar_traces(
    quiet_vigil: RunningVigil, page: Page
) -> None:
    deploys = Deploys(quiet_vigil)
    analysis = deploys.analysis
    page.goto(quiet_vigil.api + "/deploys?since=1h")
    follow(page.locator("#deploys a.canary"))
    assert page.url == f"{quiet_vigil.api}/canary/{deploys.analysis_id}"
    assert page.title() == "Canary pay 2.0 vs 1.0 · Vigil"
    assert page.locator("#verdict").inner_text() == f"FAIL score {analysis['score']:.0f}"
    assert page.locator("#reason").inner_text() == analysis["reason"]
    assert table_rows(page, "#analysis") == [
        ["pay"], ["1.0"], ["2.0"], ["any"], [f"{utc(deploys.start)} to {utc(deploys.start + 600)} (10m)"], ["done"],
    ]  # fmt: skip
    # Every check the API reports, in its order, with the same figures.
    assert table_rows(page, "#checks") == [expected_check_row(check) for check in analysis["checks"]]
    pay_latency = next(row for row in table_rows(page, "#checks") if row[:2] == ["POST /pay operation", "latency"])
    assert (pay_latency[2].split(",")[0], pay_latency[8]) == ("n=300", "fail")
    assert hrefs(page, "#exemplars a") == [f"/traces/{trace_id}" for trace_id in analysis["exemplar_trace_ids"]]
    assert len(analysis["exemplar_trace_ids"]) == 5


def test_an_unknown_analysis_is_a_404_page(quiet_vigil: RunningVigil, page: Page) -> None:
    response = page.goto(quiet_vigil.api + "/canary/c-nope")
    assert response is not None and response.status == 404
    assert page.locator(".error-message").inner_text() == (
        "There is no canary analysis with id 'c-nope'. Analyses are listed beside their deploys."
    )


def test_without_deploys_the_page_shows_how_to_report_one(quiet_vigil: RunningVigil, page: Page) -> None:
    page.goto(quiet_vigil.api + "/deploys")
    text = page.locator("#empty").inner_text()
    assert text.startswith("No deploys in the last 1h.\n\nReport one from a pipeline:")
    assert f"curl -X POST http://127.0.0.1:{quiet_vigil.ports.http}/api/v1/deploys" in text
