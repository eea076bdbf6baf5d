"""The logs search and log patterns pages in a real browser, over records sent by the OTel SDK."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from playwright.sync_api import Page

from tests.conftest import RunningVigil
from tests.dashboards.pages import chart_spec, send_logs, send_spans, table_rows
from tests.logs import orders_logs_with_span

INFO, WARN, ERROR, DEBUG = SeverityNumber.INFO, SeverityNumber.WARN, SeverityNumber.ERROR, SeverityNumber.DEBUG
TRACE_ID = 0x5B8EFFF798038103D269B633813FC60C


@dataclass(frozen=True)
class Line:
    at_s: float
    severity: SeverityNumber
    body: str
    trace_id: int | None = None


def sdk_records(service: str, lines: list[Line]) -> list[ReadableLogRecord]:
    """`lines` as the OTel SDK's logger emits them, with their own timestamps."""
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    memory = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("app")
    for line in lines:
        at = round(line.at_s * 1000) * 1_000_000  # whole milliseconds, exactly
        logger.emit(
            LogRecord(
                timestamp=at,
                observed_timestamp=at,
                severity_number=line.severity,
                severity_text=line.severity.name,
                body=line.body,
                trace_id=line.trace_id,
                span_id=0x00F067AA0BA902B7 if line.trace_id else None,
            )
        )
    provider.shutdown()
    return list(memory.get_finished_logs())


def utc_ms(seconds: float) -> str:
    """How the pages print an instant: UTC to the millisecond."""
    ms = round(seconds * 1000)
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") + f".{ms % 1000:03d}Z"


def utc_s(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def plotly_minute(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds) // 60 * 60, UTC).strftime("%Y-%m-%d %H:%M:%S.000")


def bars_by_name(spec: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {trace["name"]: dict(zip(trace["x"], trace["y"], strict=True)) for trace in spec["data"]}


def counted(lines: list[Line], *severities: SeverityNumber) -> dict[str, int]:
    """Lines of `severities` per minute, as the volume chart's x labels."""
    counts: dict[str, int] = {}
    for line in lines:
        if line.severity in severities:
            minute = plotly_minute(line.at_s)
            counts[minute] = counts.get(minute, 0) + 1
    return counts


@pytest.fixture
def now() -> int:
    """The test's present in whole seconds (expected times then need no rounding rules)."""
    return int(time.time()) - 1


def shop_lines(now: int) -> tuple[list[Line], list[Line]]:
    """The lines of the services checkout and inventory, sent by `send_shop_logs`."""
    checkout = [
        Line(now - 240.125, INFO, "order 17 accepted"),
        Line(now - 200.5, WARN, "slow query on orders took 900 ms"),
        Line(now - 150.25, ERROR, "payment for order 17 failed", TRACE_ID),
        Line(now - 100.0, INFO, "Order 18 accepted"),
    ]
    inventory = [
        Line(now - 220.75, DEBUG, "cache refreshed"),
        Line(now - 120.5, ERROR, "stock for sku 5 is negative"),
    ]
    return checkout, inventory


def send_shop_logs(vigil: RunningVigil, now: int) -> tuple[list[Line], list[Line]]:
    checkout, inventory = shop_lines(now)
    send_logs(vigil, sdk_records("checkout", checkout) + sdk_records("inventory", inventory))
    return checkout, inventory


def row(line: Line, service: str, template: str) -> list[str]:
    trace = format(line.trace_id, "032x")[:8] if line.trace_id else ""
    return [utc_ms(line.at_s), service, line.severity.name, line.body, trace, template]


def test_search_by_text_severity_service_and_trace_id_shows_exact_rows(
    vigil_server: RunningVigil, page: Page, now: int
) -> None:
    (accepted, slow, failed, accepted_again), (refreshed, negative) = send_shop_logs(vigil_server, now)

    page.goto(f"{vigil_server.api}/logs?since=1h")
    assert table_rows(page, "#logs") == [
        row(accepted_again, "checkout", "Order <NUM> accepted"),
        row(negative, "inventory", "stock for sku <NUM> is negative"),
        row(failed, "checkout", "payment for order <NUM> failed"),
        row(slow, "checkout", "slow query on orders took <NUM> ms"),
        row(refreshed, "inventory", "cache refreshed"),
        row(accepted, "checkout", "order <NUM> accepted"),
    ]

    page.fill("input[name=q]", "ORDER")
    page.click("#log-search button[type=submit]")
    page.wait_for_url(f"{vigil_server.api}/logs?since=1h&q=ORDER&severity=&service=&trace_id=&template_id=")
    assert [r[3] for r in table_rows(page, "#logs")] == [
        "Order 18 accepted",
        "payment for order 17 failed",
        "slow query on orders took 900 ms",
        "order 17 accepted",
    ]

    page.goto(f"{vigil_server.api}/logs?since=1h&severity=WARN")
    assert [r[1:4] for r in table_rows(page, "#logs")] == [
        ["inventory", "ERROR", "stock for sku 5 is negative"],
        ["checkout", "ERROR", "payment for order 17 failed"],
        ["checkout", "WARN", "slow query on orders took 900 ms"],
    ]
    assert page.locator("#logs .pill.bad").count() == 2
    assert page.locator("#logs .pill.warning").count() == 1

    page.goto(f"{vigil_server.api}/logs?since=1h&service=inventory")
    assert [r[3] for r in table_rows(page, "#logs")] == ["stock for sku 5 is negative", "cache refreshed"]

    page.goto(f"{vigil_server.api}/logs?since=1h&trace_id={TRACE_ID:032X}")
    assert table_rows(page, "#logs") == [row(failed, "checkout", "payment for order <NUM> failed")]
    assert page.locator("#logs a.trace").get_attribute("href") == f"/traces/{TRACE_ID:032x}"

    page.goto(f"{vigil_server.api}/logs?since=1h&q=nothing+like+this")
    assert page.locator("#empty").inner_text() == (
        "No logs match these filters in the last 1h. Widen the range or remove a filter."
    )


def test_a_template_link_lists_that_template_in_the_same_range(
    vigil_server: RunningVigil, page: Page, now: int
) -> None:
    checkout, _ = send_shop_logs(vigil_server, now)
    page.goto(f"{vigil_server.api}/logs?since=1h&service=checkout")
    page.locator("#logs a.template").get_by_text("order <NUM> accepted", exact=True).click()
    page.wait_for_url(re.compile(re.escape(f"{vigil_server.api}/logs?since=1h&template_id=") + r"\d+$"))
    assert table_rows(page, "#logs") == [row(checkout[0], "checkout", "order <NUM> accepted")]
    assert page.locator("#volume-source").inner_text() == "Counted per whole minute from the log pattern rollup."


def test_the_volume_chart_counts_lines_per_minute_by_severity(vigil_server: RunningVigil, page: Page, now: int) -> None:
    checkout, inventory = send_shop_logs(vigil_server, now)
    everything = checkout + inventory

    page.goto(f"{vigil_server.api}/logs?since=1h")
    spec = chart_spec(page, "volume")
    assert [trace["type"] for trace in spec["data"]] == ["bar", "bar", "bar"]
    assert spec["layout"]["barmode"] == "stack"
    assert spec["layout"]["title"]["text"] == "Log lines per minute"
    assert bars_by_name(spec) == {
        "below WARN": counted(everything, INFO, DEBUG),
        "WARN": counted(everything, WARN),
        "ERROR and FATAL": counted(everything, ERROR),
    }
    assert page.locator("#volume-source").inner_text() == "Counted per whole minute from the log pattern rollup."

    # A text search counts the matching lines themselves.
    page.goto(f"{vigil_server.api}/logs?since=1h&q=order")
    spec = chart_spec(page, "volume")
    ordered = [line for line in checkout if "order" in line.body.lower()]
    assert bars_by_name(spec) == {
        "below WARN": counted(ordered, INFO),
        "WARN": counted(ordered, WARN),
        "ERROR and FATAL": counted(ordered, ERROR),
    }
    assert page.locator("#volume-source").inner_text() == "Counted from the matching log lines."

    # The rollup splits WARN from ERROR, not INFO from DEBUG: an INFO minimum counts log lines.
    page.goto(f"{vigil_server.api}/logs?since=1h&severity=INFO&service=inventory")
    assert bars_by_name(chart_spec(page, "volume")) == {"ERROR and FATAL": counted(inventory, ERROR)}
    page.goto(f"{vigil_server.api}/logs?since=1h&severity=ERROR")
    assert bars_by_name(chart_spec(page, "volume")) == {"ERROR and FATAL": counted(everything, ERROR)}


def test_a_logged_trace_id_opens_the_trace(vigil_server: RunningVigil, page: Page) -> None:
    records, trace_id, spans = orders_logs_with_span()
    send_spans(vigil_server, spans)
    send_logs(vigil_server, records)
    page.goto(f"{vigil_server.api}/logs?since=1h&trace_id={trace_id}")
    assert [r[1:5] for r in table_rows(page, "#logs")] == [
        ["orders", "ERROR", "payment for order A-42 failed: card declined", trace_id[:8]],
        ["orders", "INFO", "order A-42 accepted", trace_id[:8]],
    ]
    page.locator("#logs a.trace").first.click()
    page.wait_for_url(f"{vigil_server.api}/traces/{trace_id}")
    assert page.title() == f"Trace {trace_id[:8]} · Vigil"


def test_markup_in_log_bodies_is_shown_as_text(vigil_server: RunningVigil, page: Page, now: int) -> None:
    bodies = ["<script>alert(1)</script>", "<b>x</b>", 'a "quoted" <img src=x onerror=alert(2)>']
    send_logs(vigil_server, sdk_records("web", [Line(now - 30 + i, ERROR, body) for i, body in enumerate(bodies)]))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{vigil_server.api}/logs?since=1h")
    assert [r[3] for r in table_rows(page, "#logs")] == list(reversed(bodies))
    assert page.locator("#logs b, #logs img, #logs script").count() == 0
    assert dialogs == []


def test_the_result_limit_is_stated(vigil_server: RunningVigil, page: Page, now: int) -> None:
    # Over five minutes, so the search reads only the last minutes that hold the newest lines.
    send_logs(vigil_server, sdk_records("busy", [Line(now - 400 + i * 1.5, INFO, f"tick {i}") for i in range(201)]))
    page.goto(f"{vigil_server.api}/logs?since=1h")
    assert page.locator("#logs tbody tr").count() == 200
    assert page.locator("#limited").inner_text() == (
        "Showing the newest 200 matching lines; narrow the search or the range to see older ones."
    )
    assert [r[3] for r in table_rows(page, "#logs")] == [f"tick {i}" for i in range(200, 0, -1)]


def test_an_empty_store_explains_how_to_send_logs(vigil_server: RunningVigil, page: Page) -> None:
    page.goto(f"{vigil_server.api}/logs")
    text = page.locator("#empty").inner_text()
    assert "No logs were received in the last 1h." in text
    assert f"export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{vigil_server.ports.otlp_http}" in text
    assert page.locator("#volume").count() == 0


def test_bad_search_parameters_explain_the_fix(vigil_server: RunningVigil, page: Page) -> None:
    for query, message in [
        ("severity=LOUD", "severity='LOUD' is not a severity; choose one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL."),
        ("trace_id=abc", "trace_id='abc' is not a trace id; give 32 hexadecimal characters."),
        ("template_id=x1", "template_id='x1' is not a template id; use a pattern's link on the Patterns page."),
    ]:
        response = page.goto(f"{vigil_server.api}/logs?{query}")
        assert response is not None and response.status == 400
        assert page.locator("#error-message").inner_text() == message
    response = page.goto(f"{vigil_server.api}/logs/patterns?severity=LOUD")
    assert response is not None and response.status == 400


# ---- patterns ------------------------------------------------------------------------------------

HEARTBEAT = "heartbeat from worker 3"
DISK = "disk sync took 800 ms"
REFUSED = "connection to db refused after 3 retries"


@dataclass(frozen=True)
class PatternLogs:
    """Three templates of billing, one first logged two hours ago, and api logging one of them."""

    now: int

    @property
    def billing(self) -> list[Line]:
        old = self.now - 7200  # outside the last hour
        return [
            Line(old, INFO, HEARTBEAT),
            Line(old + 60, INFO, HEARTBEAT),
            *(Line(self.now - 600 + 60 * i, INFO, HEARTBEAT) for i in range(4)),
            Line(self.now - 300, WARN, DISK),
            Line(self.now - 240, WARN, DISK),
            Line(self.now - 200, ERROR, REFUSED),
        ]

    @property
    def api(self) -> list[Line]:
        return [Line(self.now - 400 + 10 * i, INFO, HEARTBEAT) for i in range(3)]

    def rows(self) -> tuple[list[str], list[str], list[str], list[str]]:
        """The table rows of billing's heartbeat, api's heartbeat, billing's disk and refused patterns."""
        billing = self.billing
        return (
            self.row("heartbeat from worker <NUM>", False, "billing", billing[:6], "INFO"),
            self.row("heartbeat from worker <NUM>", True, "api", self.api, "INFO"),
            self.row("disk sync took <NUM> ms", True, "billing", billing[6:8], "WARN"),
            self.row("connection to db refused after <NUM> retries", True, "billing", billing[8:], "ERROR"),
        )

    def row(self, template: str, new: bool, service: str, lines: list[Line], severity: str) -> list[str]:
        return pattern_row(template, new, service, lines, severity, self.now)


def send_pattern_logs(vigil: RunningVigil, now: int) -> PatternLogs:
    logs = PatternLogs(now)
    send_logs(vigil, sdk_records("billing", logs.billing) + sdk_records("api", logs.api))
    return logs


def pattern_row(template: str, new: bool, service: str, lines: list[Line], severity: str, now: int) -> list[str]:
    in_range = [line for line in lines if line.at_s > now - 3600]
    warnings = sum(1 for line in in_range if line.severity == WARN)
    errors = sum(1 for line in in_range if line.severity == ERROR)
    return [
        template + (" new" if new else ""),
        service,
        str(len(in_range)),
        "",
        severity,
        str(warnings),
        str(errors),
        utc_s(min(line.at_s for line in lines)),
        utc_s(max(line.at_s for line in lines)),
        lines[0].body,
    ]


def test_patterns_show_counts_severity_and_which_are_new(vigil_server: RunningVigil, page: Page, now: int) -> None:
    heartbeat_row, api_row, disk_row, refused_row = send_pattern_logs(vigil_server, now).rows()
    page.goto(f"{vigil_server.api}/logs/patterns?since=1h")
    assert table_rows(page, "#patterns") == [heartbeat_row, api_row, disk_row, refused_row]
    assert [r.get_attribute("class") for r in page.locator("#patterns tbody tr").all()] == [None, "new", "new", "new"]
    assert page.locator("#patterns .pill.bad", has_text="ERROR").count() == 1
    assert page.locator("#patterns .pill.warning", has_text="WARN").count() == 1
    # Each trend has one point per minute of the hour; the heartbeat's four minutes are its peaks.
    points = page.locator("#patterns tbody tr").first.locator("svg.spark polyline").get_attribute("points") or ""
    heights = [float(point.split(",")[1]) for point in points.split()]
    assert len(heights) == 61
    assert sorted(heights)[:4] == [2.0, 2.0, 2.0, 2.0] and sorted(heights)[4] == 22.0

    page.goto(f"{vigil_server.api}/logs/patterns?since=1h&severity=WARN")
    assert table_rows(page, "#patterns") == [disk_row, refused_row]
    page.goto(f"{vigil_server.api}/logs/patterns?since=1h&service=api")
    assert table_rows(page, "#patterns") == [api_row]
    page.goto(f"{vigil_server.api}/logs/patterns?since=1h&service=nobody")
    assert page.locator("#empty").inner_text() == (
        "No patterns match these filters in the last 1h. Widen the range or remove a filter."
    )


def test_patterns_sort_by_column(vigil_server: RunningVigil, page: Page, now: int) -> None:
    send_pattern_logs(vigil_server, now)
    page.goto(f"{vigil_server.api}/logs/patterns?since=1h")
    page.click("#patterns th:has-text('Lines')")
    assert [r[2] for r in table_rows(page, "#patterns")] == ["1", "2", "3", "4"]
    page.click("#patterns th:has-text('Lines')")
    assert [r[2] for r in table_rows(page, "#patterns")] == ["4", "3", "2", "1"]
    page.click("#patterns th:has-text('Max severity')")
    assert [r[4] for r in table_rows(page, "#patterns")] == ["INFO", "INFO", "WARN", "ERROR"]
    page.click("#patterns th:has-text('Service')")
    assert [r[1] for r in table_rows(page, "#patterns")] == ["api", "billing", "billing", "billing"]


def test_a_pattern_opens_the_logs_of_that_pattern(vigil_server: RunningVigil, page: Page, now: int) -> None:
    billing = send_pattern_logs(vigil_server, now).billing
    page.goto(f"{vigil_server.api}/logs/patterns?since=1h")
    page.click("#patterns a:has-text('heartbeat from worker')")
    page.wait_for_url(re.compile(re.escape(f"{vigil_server.api}/logs?since=1h&template_id=") + r"\d+&service=billing$"))
    assert table_rows(page, "#logs") == [
        row(line, "billing", "heartbeat from worker <NUM>") for line in reversed(billing[2:6])
    ]


def test_no_logs_means_no_patterns_and_says_how_to_send_them(vigil_server: RunningVigil, page: Page) -> None:
    page.goto(f"{vigil_server.api}/logs/patterns")
    text = page.locator("#empty").inner_text()
    assert "No logs were received in the last 1h, so there are no patterns." in text
    assert f"or grpc with port {vigil_server.ports.otlp_grpc}" in text
