"""What page tests share: sending telemetry through the real OTel exporters, and reading
tables and charts the way a user sees them."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from playwright.sync_api import Locator, Page

from tests.conftest import RunningVigil

__all__ = ["chart_spec", "follow", "send_logs", "send_spans", "table_rows"]


def send_spans(vigil: RunningVigil, spans: list[ReadableSpan]) -> None:
    """Exports `spans` over OTLP/gRPC and waits until they are stored."""
    exporter = OTLPSpanExporter(endpoint=vigil.otlp_grpc, insecure=True)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    vigil.flush()


def send_logs(vigil: RunningVigil, records: list[ReadableLogRecord]) -> None:
    exporter = OTLPLogExporter(endpoint=vigil.otlp_grpc, insecure=True)
    assert exporter.export(records) == LogRecordExportResult.SUCCESS
    exporter.shutdown()
    vigil.flush()


def follow(link: Locator) -> None:
    """Click `link` and wait for the page it leads to: a click returns once the navigation
    commits, before the new page has its title or its content."""
    with link.page.expect_navigation():
        link.click()


def table_rows(page: Page, selector: str) -> list[list[str]]:
    """The visible text of each body row's cells, once the page has loaded (a click that follows
    a link returns when the navigation commits; `all()` does not wait for rows to arrive)."""
    page.wait_for_load_state()
    return [
        [cell.strip() for cell in row.locator("td").all_inner_texts()]
        for row in page.locator(f"{selector} tbody tr").all()
    ]


def chart_spec(page: Page, chart_id: str) -> dict[str, Any]:
    """The plotly spec a chart was drawn from, after checking plotly drew it."""
    page.wait_for_selector(f"#{chart_id}[data-drawn='true'] .main-svg")
    spec: dict[str, Any] = json.loads(page.locator(f"#{chart_id}-spec").text_content() or "")
    return spec
