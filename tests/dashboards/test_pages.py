"""The pages as an on-call engineer sees them, in a real browser (Debian's chromium via Playwright)."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.conftest import RunningVigil
from tests.dashboards.pages import follow, send_logs, send_spans, table_rows
from tests.logs import orders_logs_with_span
from tests.spans import checkout_trace, now_ns, trace_id_of


def test_an_empty_store_explains_where_to_send_traces(vigil_server: RunningVigil, page: Page) -> None:
    page.goto(vigil_server.api + "/")
    assert page.title() == "Services · Vigil"
    text = page.locator("#empty").inner_text()
    assert "No services have sent traces in the last 1h." in text
    otlp = vigil_server.ports
    assert f"export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{otlp.otlp_http}" in text
    assert f"or grpc with port {otlp.otlp_grpc}" in text


def test_services_lead_to_their_traces_and_a_trace_opens_as_a_waterfall(vigil_server: RunningVigil, page: Page) -> None:
    spans = checkout_trace(now_ns() - 2_000_000_000)
    send_spans(vigil_server, spans)

    page.goto(vigil_server.api + "/?since=1h")
    assert table_rows(page, "#services") == [
        ["payments", "1", "0.00", "100.00%", "18.0", "18.0", "18.0", "", "", "0", "none"],
        ["shop", "1", "0.00", "0.00%", "30.0", "30.0", "30.0", "", "", "0", "none"],
    ]
    assert page.locator("a.range.active").inner_text() == "1h"

    page.click("#services >> text=shop")
    assert page.url == f"{vigil_server.api}/services/shop?since=1h"
    page.click("#service-links >> text=Traces")
    assert page.url == f"{vigil_server.api}/traces?since=1h&service=shop"
    (row,) = table_rows(page, "#traces")
    assert row[1:] == ["shop: GET /checkout", "30.00", "3", "1", "payments, shop"]

    follow(page.locator("#traces tbody tr a"))
    assert page.url == f"{vigil_server.api}/traces/{trace_id_of(spans)}"
    names = [t.strip() for t in page.locator("#waterfall summary").all_inner_texts()]
    assert names == ["shop GET /checkout Server", "shop POST payments Client", "payments charge Server"]
    assert page.locator("#waterfall tr.error").count() == 1


def test_a_trace_page_lists_the_logs_carrying_its_trace_id(vigil_server: RunningVigil, page: Page) -> None:
    records, trace_id, spans = orders_logs_with_span()
    send_spans(vigil_server, spans)
    send_logs(vigil_server, records)
    page.goto(f"{vigil_server.api}/traces/{trace_id}")
    assert [row[1:] for row in table_rows(page, "#trace-logs")] == [
        ["orders", "INFO", "order A-42 accepted", "POST /orders"],
        ["orders", "ERROR", "payment for order A-42 failed: card declined", "POST /orders"],
    ]
    assert page.locator("#trace-logs tr.error").count() == 1


def test_a_trace_without_logs_says_how_logs_get_linked(vigil_server: RunningVigil, page: Page) -> None:
    spans = checkout_trace(now_ns() - 2_000_000_000)
    send_spans(vigil_server, spans)
    page.goto(f"{vigil_server.api}/traces/{trace_id_of(spans)}")
    assert page.locator("#trace-logs").count() == 0
    assert "No logs carry this trace id." in page.locator("main").inner_text()


def test_a_malformed_trace_id_renders_an_error_page_not_a_stack_trace(vigil_server: RunningVigil, page: Page) -> None:
    response = page.goto(vigil_server.api + "/traces/not-a-trace")
    assert response is not None and response.status == 400
    assert page.locator(".error-message").inner_text() == "'not-a-trace' is not a trace id (32 hex characters)."


def test_names_from_telemetry_are_escaped(vigil_server: RunningVigil, page: Page) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "<b>evil</b>"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("t").start_span("x", kind=SpanKind.SERVER).end()
    provider.shutdown()
    send_spans(vigil_server, list(memory.get_finished_spans()))
    page.goto(vigil_server.api + "/")
    assert table_rows(page, "#services")[0][0] == "<b>evil</b>"
    assert page.locator("#services b").count() == 0
