"""The alerts page in a real browser: alert states made by the alert engine from findings, and
silences created and expired through the page's forms."""

from __future__ import annotations

import time
from typing import Any

import httpx
from playwright.sync_api import Page

from tests.conftest import RunningVigil
from tests.dashboards.pages import follow, table_rows
from vigil.alerts.engine import AlertEngine
from vigil.store.client import open_client
from vigil.store.findings import Finding, FindingStore

RULES = {
    "rules": [
        {"name": "oncall", "services": ["checkout", "orders", "search"]},
        {"name": "pay-slow", "services": ["payments"], "for": "1h", "channels": ["#payments"]},
    ]
}


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + "Z"


def finding(service: str, started: float, **fields: Any) -> Finding:
    values: dict[str, Any] = {
        "id": f"f-{service}",
        "kind": "service_regression",
        "service": service,
        "operation": "",
        "signal": "error_rate",
        "series": f'["{service}","","error_rate"]',
        "started_at": started,
        "ended_at": None,
        "status": "open",
        "severity": "warning",
        "score": 0.9,
        "baseline": 0.01,
        "observed": 0.2,
        "unit": "ratio",
        "summary": f"error rate of {service} rose from 1% to 20%.",
    }
    return Finding(**(values | fields))


class Alerts:
    """Alert states as the alert engine leaves them over three rounds: orders fired and resolved;
    then checkout fires, payments is pending (its rule waits an hour) and search is silenced."""

    def __init__(self, vigil: RunningVigil) -> None:
        self.vigil = vigil
        self.now = float(int(time.time()))
        assert httpx.put(f"{vigil.api}/api/v1/alert-rules", json=RULES).status_code == 200
        client = open_client(vigil.settings.clickhouse_url)
        database = vigil.settings.clickhouse_database
        findings = FindingStore(client, database)
        engine = AlertEngine(client, database, default_channel="#alerts", public_url=vigil.api)

        orders = finding("orders", self.now - 1800)
        findings.write([orders])
        engine.evaluate(self.now - 1700)
        findings.write([finding("orders", self.now - 1800, status="closed", ended_at=self.now - 1200)])
        engine.evaluate(self.now - 1190)

        self.search_silence = self.silence(
            {"matchers": {"service": "search"}, "author": "bob", "duration": "1d", "starts_at": self.now - 60}
        )
        self.checkout = finding(
            "checkout",
            self.now - 600,
            severity="critical",
            operation="POST /pay",
            signal="latency_p95",
            summary='p95 of POST /pay rose to 1,240 ms <img src="x" onerror="window.injected = 1">',
        )
        findings.write(
            [self.checkout, finding("payments", self.now - 300), finding("search", self.now - 900, severity="critical")]
        )
        engine.evaluate(self.now)

    def silence(self, body: dict[str, Any]) -> dict[str, Any]:
        created = httpx.post(f"{self.vigil.api}/api/v1/silences", json=body)
        assert created.status_code == 201, created.text
        (silence,) = [s for s in self.api_silences() if s["id"] == created.json()["id"]]
        return silence

    def api_silences(self) -> list[dict[str, Any]]:
        silences: list[dict[str, Any]] = httpx.get(f"{self.vigil.api}/api/v1/silences").json()
        return silences

    def search_silence_row(self) -> list[str]:
        s = self.search_silence
        return ["active", "service=search", "", "bob", utc(s["starts_at"]), utc(s["ends_at"]), "Expire"]


def test_alerts_show_firing_pending_and_silenced_now_and_those_resolved_in_range(
    quiet_vigil: RunningVigil, page: Page
) -> None:
    alerts = Alerts(quiet_vigil)
    now = alerts.now
    page.goto(quiet_vigil.api + "/alerts?since=1h")
    assert table_rows(page, "#active-alerts") == [
        ["firing", "critical", "oncall", "checkout", alerts.checkout.summary, utc(now), "#alerts", "silence"],
        ["pending", "warning", "pay-slow", "payments", "error rate of payments rose from 1% to 20%.", utc(now - 300),
         "", "silence"],
        ["silenced", "critical", "oncall", "search", "error rate of search rose from 1% to 20%.", utc(now - 900),
         "", ""],
    ]  # fmt: skip
    assert table_rows(page, "#resolved-alerts") == [
        ["warning", "oncall", "orders", "error rate of orders rose from 1% to 20%.", utc(now - 1800),
         utc(now - 1190), "10m"],
    ]  # fmt: skip
    assert table_rows(page, "#silences") == [alerts.search_silence_row()]
    # The summary is text: no image made of it, no handler run.
    assert page.locator("#active-alerts img").count() == 0
    assert page.evaluate("window.injected") is None
    assert page.locator("#active-alerts a.finding").first.get_attribute("href") == "/findings/f-checkout"

    # Resolved 20 minutes ago: outside the last 15 minutes.
    page.goto(quiet_vigil.api + "/alerts?since=15m")
    assert page.locator("#resolved-alerts").count() == 0
    assert page.locator("#no-resolved-alerts").inner_text() == "No alert resolved in the last 15m."
    assert len(table_rows(page, "#active-alerts")) == 3


def test_a_silence_made_from_a_firing_alert_is_listed_as_the_api_lists_it_and_can_be_expired(
    quiet_vigil: RunningVigil, page: Page
) -> None:
    alerts = Alerts(quiet_vigil)
    page.goto(quiet_vigil.api + "/alerts?since=1h")
    follow(page.locator("#active-alerts tr:has-text('checkout') a.silence-this"))
    assert page.url.startswith(f"{quiet_vigil.api}/alerts?since=1h&matchers=service%3Dcheckout%0Arule%3Doncall")
    assert page.locator("#new-silence textarea[name=matchers]").input_value() == (
        "service=checkout\nrule=oncall\noperation=POST /pay\nsignal=latency_p95"
    )
    assert page.locator("#new-silence input[name=duration]").input_value() == "2h"
    page.fill("#new-silence input[name=comment]", "fix <b>deploying</b>")
    page.fill("#new-silence input[name=created_by]", "ann")
    with page.expect_navigation() as navigation:
        page.click("#new-silence button")
    # The POST answered 303 and the browser followed it back to the page, range kept.
    assert navigation.value is not None and navigation.value.status == 200
    assert page.url == f"{quiet_vigil.api}/alerts?since=1h"

    newest, older = alerts.api_silences()
    assert (newest["matchers"], newest["author"], newest["comment"], newest["active"]) == (
        {"service": "checkout", "rule": "oncall", "operation": "POST /pay", "signal": "latency_p95"},
        "ann",
        "fix <b>deploying</b>",
        True,
    )
    assert newest["ends_at"] - newest["starts_at"] == 7200
    assert older["id"] == alerts.search_silence["id"]
    assert table_rows(page, "#silences") == [
        ["active", "operation=POST /pay rule=oncall service=checkout signal=latency_p95", "fix <b>deploying</b>", "ann",
         utc(newest["starts_at"]), utc(newest["ends_at"]), "Expire"],
        alerts.search_silence_row(),
    ]  # fmt: skip
    assert page.locator("#silences b").count() == 0

    follow(page.locator(f"#silence-{newest['id']} button"))
    assert page.url == f"{quiet_vigil.api}/alerts?since=1h"
    expired, _ = alerts.api_silences()
    assert expired["id"] == newest["id"] and expired["active"] is False
    assert table_rows(page, "#silences")[0] == [
        "expired", "operation=POST /pay rule=oncall service=checkout signal=latency_p95", "fix <b>deploying</b>", "ann",
        utc(expired["starts_at"]), utc(expired["ends_at"]), "",
    ]  # fmt: skip


def submit_silence(page: Page, vigil: RunningVigil, **fields: str) -> int:
    page.goto(vigil.api + "/alerts?since=1h")
    for name, value in fields.items():
        page.fill(f"#new-silence [name={name}]", value)
    with page.expect_navigation() as navigation:
        page.click("#new-silence button")
    assert navigation.value is not None
    return navigation.value.status


def test_a_bad_silence_is_refused_with_a_400_naming_the_problem_and_the_form_kept(
    quiet_vigil: RunningVigil, page: Page
) -> None:
    status = submit_silence(
        page, quiet_vigil, matchers="service=payments", duration="soon", comment="db failover", created_by="ann"
    )
    assert status == 400
    assert page.locator("#form-error").inner_text() == (
        "The silence was not created. Duration 'soon': expected a duration such as 30m, 2h or 1d."
    )
    assert page.locator("#new-silence textarea[name=matchers]").input_value() == "service=payments"
    assert page.locator("#new-silence input[name=comment]").input_value() == "db failover"
    assert page.url == f"{quiet_vigil.api}/alerts/silences?since=1h"
    # A range picked on the refused form's page leads back to the alerts page.
    page.click("#picker a.range:text-is('6h')")
    assert page.url == f"{quiet_vigil.api}/alerts?since=6h"

    assert submit_silence(page, quiet_vigil, matchers="colour=red", created_by="ann") == 400
    assert page.locator("#form-error").inner_text() == (
        "The silence was not created. Matchers: unknown label 'colour'; expected some of "
        "['kind', 'operation', 'rule', 'service', 'severity', 'signal']."
    )
    assert submit_silence(page, quiet_vigil, matchers="payments", created_by="ann") == 400
    assert page.locator("#form-error").inner_text() == (
        "The silence was not created. Matchers: 'payments' is not label=value; write one per line, "
        "e.g. service=payments."
    )
    assert submit_silence(page, quiet_vigil, matchers="service=payments") == 400
    assert page.locator("#form-error").inner_text() == "The silence was not created. Created by is required."
    assert httpx.get(f"{quiet_vigil.api}/api/v1/silences").json() == []


def test_expiring_an_unknown_silence_is_a_404_page(quiet_vigil: RunningVigil) -> None:
    response = httpx.post(f"{quiet_vigil.api}/alerts/silences/s-nope/expire")
    assert response.status_code == 404
    assert "There is no silence with id &#39;s-nope&#39;; the Alerts page lists them all." in response.text


def test_without_alerts_the_page_says_where_they_come_from(quiet_vigil: RunningVigil, page: Page) -> None:
    page.goto(quiet_vigil.api + "/alerts")
    assert page.locator("#no-active-alerts").inner_text().startswith("Nothing is firing or pending.")
    assert page.locator("#no-silences").inner_text() == "No silences yet."
