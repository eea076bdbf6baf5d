"""The per-minute call rollup between services, over SDK spans written through the real store path."""

from __future__ import annotations

import time
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from tests.service_spans import SpanBuilder, store_spans
from vigil.detectors.engine import DetectorEngine
from vigil.settings import load_settings
from vigil.store.client import Client
from vigil.store.migrate import migrate
from vigil.store.schema import DdlContext
from vigil.store.service_edges import ServiceEdgeRollup
from vigil.store.write import StoreWriter

# A whole hour in the past, so its minutes are closed and inside retention.
BASE = int(time.time()) // 3600 * 3600 - 3600


@pytest.fixture
def writer(chdb_client: Client, database: str) -> StoreWriter:
    migrate(chdb_client, DdlContext(database=database))
    return StoreWriter(chdb_client, database)


def edges(writer: StoreWriter) -> list[tuple[Any, ...]]:
    """(minute offset from BASE, caller, callee, calls, errors, duration sum ms), as readers see them."""
    rows = writer.client.query(
        f"SELECT toUnixTimestamp(Minute) - {BASE}, Caller, Callee, Calls, Errors, DurationSum / 1000000 "
        f"FROM {writer.database}.service_edges_1m FINAL ORDER BY Minute, Caller, Callee"
    ).result_rows
    return [tuple(row) for row in rows]


def checkout(spans: SpanBuilder, at: float, *, failing: bool = False) -> None:
    """shop GET /checkout -> shop client -> payments charge -> payments internal step;
    shop GET /checkout -> inventory reserve (called without a client span)."""
    root = spans.add("shop", "GET /checkout", start_s=at, ms=50)
    client = spans.add("shop", "POST /charge", start_s=at + 0.001, ms=30, kind=SpanKind.CLIENT, parent=root)
    charge = spans.add("payments", "charge", start_s=at + 0.002, ms=25, parent=client, error=failing)
    spans.add("payments", "ledger", start_s=at + 0.003, ms=5, kind=SpanKind.INTERNAL, parent=charge)
    spans.add("inventory", "reserve", start_s=at + 0.004, ms=10, parent=root)


def test_calls_between_services_are_counted_per_minute_and_calls_within_a_service_are_not(
    writer: StoreWriter,
) -> None:
    spans = SpanBuilder()
    checkout(spans, BASE + 5)
    checkout(spans, BASE + 20, failing=True)
    checkout(spans, BASE + 65)
    store_spans(writer, spans.finished())
    ServiceEdgeRollup(writer.client, writer.database).fill(BASE, BASE + 180)
    assert edges(writer) == [
        (0, "shop", "inventory", 2, 0, 20.0),
        (0, "shop", "payments", 2, 1, 50.0),
        (60, "shop", "inventory", 1, 0, 10.0),
        (60, "shop", "payments", 1, 0, 25.0),
    ]


def test_filling_a_minute_again_rewrites_it_with_late_spans_and_never_doubles_it(writer: StoreWriter) -> None:
    spans = SpanBuilder()
    checkout(spans, BASE + 5)
    store_spans(writer, spans.finished())
    rollup = ServiceEdgeRollup(writer.client, writer.database)
    rollup.fill(BASE, BASE + 60)
    rollup.fill(BASE, BASE + 60)
    assert edges(writer) == [(0, "shop", "inventory", 1, 0, 10.0), (0, "shop", "payments", 1, 0, 25.0)]

    late = SpanBuilder()
    checkout(late, BASE + 30, failing=True)
    store_spans(writer, late.finished())
    rollup.fill(BASE, BASE + 60)
    assert edges(writer) == [(0, "shop", "inventory", 2, 0, 20.0), (0, "shop", "payments", 2, 1, 50.0)]


def test_a_parent_that_started_minutes_before_its_child_is_found(writer: StoreWriter) -> None:
    spans = SpanBuilder()
    batch = spans.add("reports", "nightly", start_s=BASE + 10, ms=15 * 60 * 1000)
    spans.add("warehouse", "export", start_s=BASE + 12 * 60 + 1, ms=2000, parent=batch)
    store_spans(writer, spans.finished())
    ServiceEdgeRollup(writer.client, writer.database).fill(BASE + 12 * 60, BASE + 13 * 60)
    assert edges(writer) == [(720, "reports", "warehouse", 1, 0, 2000.0)]


def test_run_fills_closed_minutes_once_and_resumes_after_the_last(writer: StoreWriter) -> None:
    spans = SpanBuilder()
    checkout(spans, BASE + 5)
    checkout(spans, BASE + 65)
    store_spans(writer, spans.finished())
    rollup = ServiceEdgeRollup(writer.client, writer.database, max_catch_up_s=600)

    # Minute 1 ends at BASE + 120 and closes two minutes later: not yet.
    assert rollup.run(BASE + 60 + 60 + 119) == 10
    assert [row[0] for row in edges(writer)] == [0, 0]
    assert rollup.run(BASE + 60 + 60 + 119) == 0
    assert rollup.run(BASE + 60 + 60 + 120) == 1
    assert [row[0] for row in edges(writer)] == [0, 0, 60, 60]
    # A new rollup (a restart) resumes from the stored watermark instead of catching up again.
    assert ServiceEdgeRollup(writer.client, writer.database, max_catch_up_s=600).run(BASE + 60 + 60 + 180) == 1


def test_a_catch_up_skips_the_minutes_without_calls_and_fills_the_rest(writer: StoreWriter) -> None:
    spans = SpanBuilder()
    checkout(spans, BASE + 50 * 60 + 5)  # the only calls of a six-hour catch-up
    store_spans(writer, spans.finished())
    rollup = ServiceEdgeRollup(writer.client, writer.database)
    assert rollup.run(BASE + 52 * 60 + 120) == 6 * 60
    assert [row[0] for row in edges(writer)] == [50 * 60, 50 * 60]
    assert rollup.run(BASE + 52 * 60 + 120) == 0


def test_a_store_without_calls_moves_only_the_watermark(writer: StoreWriter) -> None:
    rollup = ServiceEdgeRollup(writer.client, writer.database)
    assert rollup.run(BASE + 120) == 6 * 60
    assert edges(writer) == []
    # Calls arriving later, in a minute not yet closed, are rolled up when it closes.
    spans = SpanBuilder()
    checkout(spans, BASE + 5)
    store_spans(writer, spans.finished())
    assert rollup.run(BASE + 180) == 1
    assert [row[0] for row in edges(writer)] == [0, 0]


def test_a_first_run_catches_up_only_so_far(writer: StoreWriter) -> None:
    spans = SpanBuilder()
    checkout(spans, BASE + 5)
    checkout(spans, BASE + 65)
    store_spans(writer, spans.finished())
    # Closed until BASE + 180; two minutes back from there is BASE + 60, so minute 0 is left out.
    rollup = ServiceEdgeRollup(writer.client, writer.database, max_catch_up_s=120)
    assert rollup.run(BASE + 300) == 2
    assert [row[0] for row in edges(writer)] == [60, 60]


def test_fill_takes_whole_minutes_only(writer: StoreWriter) -> None:
    with pytest.raises(ValueError, match=r"fill\(30, 90\): start and end must be whole minutes"):
        ServiceEdgeRollup(writer.client, writer.database).fill(30, 90)


def test_the_detector_engine_fills_the_rollup_each_round(writer: StoreWriter, chdb_url: str) -> None:
    recent = int(time.time()) // 60 * 60 - 600
    spans = SpanBuilder()
    checkout(spans, recent + 5)
    store_spans(writer, spans.finished())
    settings = load_settings(clickhouse_url=chdb_url, clickhouse_database=writer.database)
    DetectorEngine.from_settings(settings, writer.client, writer.database).run_once()
    assert edges(writer) == [
        (recent - BASE, "shop", "inventory", 1, 0, 10.0),
        (recent - BASE, "shop", "payments", 1, 0, 25.0),
    ]
