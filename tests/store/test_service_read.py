"""The services pages' reads over SDK spans written through the real store path: exact figures."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.service_spans import SpanBuilder, shop_and_payments_spans, store_spans
from vigil.detectors.slo import policy_of, slo_status
from vigil.detectors.slo_burn import BURN_WINDOWS, evaluate, parse_window
from vigil.store.client import Client
from vigil.store.findings import Finding, FindingStore
from vigil.store.migrate import migrate
from vigil.store.read import ServiceSummary, StoreReader
from vigil.store.schema import DdlContext
from vigil.store.service_edges import ServiceEdgeRollup
from vigil.store.service_read import (
    Dependencies,
    Edge,
    ErrorSpan,
    OperationStats,
    RedPoint,
    ServiceSeries,
    ServiceTrend,
    SloWindowCounts,
    VersionSeries,
    VersionStats,
    dependencies,
    edges_recorded,
    open_findings_by_service,
    operations,
    recent_errors,
    red_series,
    service_known,
    service_series,
    service_trends,
    slo_window_counts,
    version_series,
    versions,
)
from vigil.store.slos import SloDefinition, SloStore
from vigil.store.write import StoreWriter

# A whole hour in the past: every minute read is complete and inside retention.
BASE = int(time.time()) // 3600 * 3600 - 3600
END = BASE + 599  # ten minutes: BASE ... BASE + 540


@pytest.fixture
def reader(chdb_client: Client, database: str) -> StoreReader:
    migrate(chdb_client, DdlContext(database=database))
    return StoreReader(chdb_client, database)


def shop_and_payments(reader: StoreReader) -> dict[str, str]:
    spans, ids = shop_and_payments_spans(BASE)
    store_spans(StoreWriter(reader.client, reader.database), spans)
    return ids


def test_operations_count_requests_and_quantiles_per_span_name(reader: StoreReader) -> None:
    shop_and_payments(reader)
    assert operations(reader.query, "shop", start_s=BASE, end_s=END) == [
        OperationStats("GET /cart", 4, round(4 / 599, 3), 0.25, 20.0, 40.0, 40.0),
        OperationStats("POST /pay", 2, round(2 / 599, 3), 0.5, 100.0, 200.0, 200.0),
    ]
    # Client and internal spans are not requests: payments' only operation is its server span.
    assert [op.operation for op in operations(reader.query, "payments", start_s=BASE, end_s=END)] == ["charge"]


def test_versions_have_their_share_of_requests_and_where_they_were_seen(reader: StoreReader) -> None:
    shop_and_payments(reader)
    assert versions(reader.query, "shop", start_s=BASE, end_s=END) == [
        VersionStats("2.0", 3, 0.5, 0.3333, 100.0, 200.0, 200.0, first_seen_s=BASE + 120, last_seen_s=BASE + 180),
        VersionStats("1.0", 3, 0.5, 0.3333, 20.0, 30.0, 30.0, first_seen_s=BASE, last_seen_s=BASE),
    ]
    # A range that starts after 1.0 stopped serving sees 2.0 alone.
    assert [v.version for v in versions(reader.query, "shop", start_s=BASE + 120, end_s=END)] == ["2.0"]


def test_red_series_has_a_point_per_bucket_with_requests(reader: StoreReader) -> None:
    shop_and_payments(reader)
    assert red_series(reader.query, "shop", start_s=BASE, end_s=END, step=60) == [
        RedPoint(BASE, 3, 1, 20.0, 30.0, 30.0),
        RedPoint(BASE + 120, 1, 0, 40.0, 40.0, 40.0),
        RedPoint(BASE + 180, 2, 1, 100.0, 200.0, 200.0),
    ]
    assert red_series(reader.query, "shop", start_s=BASE, end_s=END, step=120) == [
        RedPoint(BASE, 3, 1, 20.0, 30.0, 30.0),
        RedPoint(BASE + 120, 3, 1, 100.0, 200.0, 200.0),
    ]


def test_trends_give_every_service_a_value_per_bucket(reader: StoreReader) -> None:
    shop_and_payments(reader)
    assert service_trends(reader.query, start_s=BASE, end_s=END, step=120) == {
        "shop": ServiceTrend("shop", [3, 3, 0, 0, 0], [1 / 3, 1 / 3, None, None, None], errors=2),
        "payments": ServiceTrend("payments", [0, 2, 0, 0, 0], [None, 0.5, None, None, None], errors=1),
    }


def test_version_series_counts_requests_per_bucket_and_version(reader: StoreReader) -> None:
    shop_and_payments(reader)
    times, series = version_series(reader.query, "shop", start_s=BASE, end_s=END, step=120)
    assert times == [BASE, BASE + 120, BASE + 240, BASE + 360, BASE + 480]
    assert series == [VersionSeries("1.0", [3, 0, 0, 0, 0]), VersionSeries("2.0", [0, 3, 0, 0, 0])]


def test_the_page_s_two_rollup_reads_give_every_figure_from_rollup_rows_not_yet_merged(
    reader: StoreReader, stop_merges: Callable[[str], None]
) -> None:
    # Merges stopped and one insert per span: each minute, operation and version has as many
    # rollup rows as spans, as under ingest before ClickHouse merges the parts.
    stop_merges("spans_red_1m")
    writer = StoreWriter(reader.client, reader.database)
    spans = SpanBuilder()
    requests = [(0, "GET /cart", "1.0", 10), (0, "GET /cart", "1.0", 30), (0, "POST /pay", "1.0", 50)]
    for i, (minute, name, version, ms) in enumerate([*requests, (2, "GET /cart", "2.0", 70)]):
        spans.add("shop", name, start_s=BASE + 60 * minute + i, ms=ms, version=version, error=ms == 50)
    for span in spans.finished():
        store_spans(writer, [span])
    assert reader.query("SELECT count() AS n FROM {db}.spans_red_1m") == [{"n": 4}]

    found = service_series(reader.query, "shop", start_s=BASE, end_s=END, step=120)
    assert found.summary == ServiceSummary("shop", 4, round(4 / 599, 3), 0.25, 30.0, 70.0, 70.0)
    assert operations(reader.query, "shop", start_s=BASE, end_s=END) == [
        OperationStats("GET /cart", 3, round(3 / 599, 3), 0.0, 30.0, 70.0, 70.0),
        OperationStats("POST /pay", 1, round(1 / 599, 3), 1.0, 50.0, 50.0, 50.0),
    ]
    assert found.versions == [
        VersionStats("2.0", 1, 0.25, 0.0, 70.0, 70.0, 70.0, first_seen_s=BASE + 120, last_seen_s=BASE + 120),
        VersionStats("1.0", 3, 0.75, 0.3333, 30.0, 50.0, 50.0, first_seen_s=BASE, last_seen_s=BASE),
    ]
    assert found.red == [RedPoint(BASE, 3, 1, 30.0, 50.0, 50.0), RedPoint(BASE + 120, 1, 0, 70.0, 70.0, 70.0)]
    assert found.version_series == (
        [BASE, BASE + 120, BASE + 240, BASE + 360, BASE + 480],
        [VersionSeries("1.0", [3, 0, 0, 0, 0]), VersionSeries("2.0", [0, 1, 0, 0, 0])],
    )
    # Without a step, the same figures and no series.
    assert service_series(reader.query, "shop", start_s=BASE, end_s=END) == ServiceSeries(
        found.summary, found.versions, [], ([], [])
    )


class ByServiceOnly(StoreReader):
    """A reader whose every query must be answered, at least in part, from the rollup's
    `by_service` projection; ClickHouse refuses one that is not."""

    def _query(self, sql: str, **parameters: Any) -> list[dict[str, Any]]:
        return super()._query(sql + "\nSETTINGS force_optimize_projection_name = 'by_service'", **parameters)


def test_the_overview_and_a_service_s_charts_and_versions_are_read_from_the_per_service_projection(
    reader: StoreReader,
) -> None:
    shop_and_payments(reader)
    projected = ByServiceOnly(reader.client, reader.database)

    assert projected.services(start_s=BASE, end_s=END) == reader.services(start_s=BASE, end_s=END)
    assert [s.service for s in projected.services(start_s=BASE, end_s=END)] == ["payments", "shop"]
    trends = service_trends(projected.query, start_s=BASE, end_s=END, step=120)
    assert trends == service_trends(reader.query, start_s=BASE, end_s=END, step=120)
    for step in (120, None):
        series = service_series(projected.query, "shop", start_s=BASE, end_s=END, step=step)
        assert series.summary == ServiceSummary("shop", 6, round(6 / 599, 3), 0.3333, 30.0, 200.0, 200.0)
        assert [v.version for v in series.versions] == ["2.0", "1.0"]
    # The operations are the rollup's own rows: the projection has no span names.
    with pytest.raises(DatabaseError, match="by_service"):
        operations(projected.query, "shop", start_s=BASE, end_s=END)


def test_recent_errors_are_the_newest_error_spans_including_those_that_are_not_requests(reader: StoreReader) -> None:
    ids = shop_and_payments(reader)
    found = recent_errors(reader.query, "shop", start_s=BASE, end_s=END)
    assert [(e.trace_id, e.operation, e.version, e.duration_ns) for e in found] == [
        (ids["cleanup"], "cleanup", "2.0", 5_000_000),
        (ids["pay"], "POST /pay", "2.0", 200_000_000),
        (ids["cart"], "GET /cart", "1.0", 30_000_000),
    ]
    assert found[0] == ErrorSpan(
        trace_id=ids["cleanup"],
        span_id=found[0].span_id,
        operation="cleanup",
        version="2.0",
        start_time_unix_nano=(BASE + 310) * 1_000_000_000,
        duration_ns=5_000_000,
        status_message="cleanup failed",
    )
    # The newest two, whatever their operation or kind.
    assert [e.operation for e in recent_errors(reader.query, "shop", start_s=BASE, end_s=END, limit=2)] == [
        "cleanup",
        "POST /pay",
    ]
    assert recent_errors(reader.query, "shop", start_s=BASE + 360, end_s=END) == []


def errors_read_at_most(reader: StoreReader, rows: int) -> Any:
    """`reader.query`, but ClickHouse refuses a read of `error_spans` that must look at more than `rows` rows."""

    def query(sql: str, **parameters: Any) -> list[dict[str, Any]]:
        assert "FROM {db}.error_spans\n" in sql
        return reader.query(sql + f"\nSETTINGS max_rows_to_read = {rows}, read_overflow_mode = 'throw'", **parameters)

    return query


def test_recent_errors_of_a_healthy_service_read_no_row(reader: StoreReader) -> None:
    shop_and_payments(reader)
    spans = SpanBuilder()
    for i in range(3000):
        spans.add("accounts", f"GET /{i % 7}", start_s=BASE + i * 0.1, ms=5)
    store_spans(StoreWriter(reader.client, reader.database), spans.finished())

    # Only error spans are kept apart, ordered by service: the healthy service has none to read.
    assert recent_errors(errors_read_at_most(reader, 1), "accounts", start_s=BASE, end_s=END) == []
    assert [e.operation for e in recent_errors(reader.query, "shop", start_s=BASE, end_s=END)] == [
        "cleanup",
        "POST /pay",
        "GET /cart",
    ]


def test_recent_errors_read_the_range_not_the_errors_before_it(reader: StoreReader) -> None:
    # A day ago, 40,000 errors over 50 operations; in the range, one error a second over ten minutes.
    reader.client.command(
        f"""INSERT INTO {reader.database}.spans
                (Timestamp, ServiceName, SpanName, StatusCode, TraceId, SpanId, SpanKind, Duration)
            SELECT toDateTime64({BASE - 86400} + number * 0.5, 9, 'UTC'), 'busy',
                   concat('GET /', toString(number % 50)), 'Error', hex(number), hex(number), 'Server', 1000
            FROM numbers(40000)"""
    )
    reader.client.command(
        f"""INSERT INTO {reader.database}.spans
                (Timestamp, ServiceName, SpanName, StatusCode, TraceId, SpanId, SpanKind, Duration)
            SELECT toDateTime64({BASE} + number * 0.01, 9, 'UTC'), 'busy',
                   concat('GET /', toString(number % 50)), if(number % 100 = 0, 'Error', 'Ok'),
                   hex(100000 + number), hex(100000 + number), 'Server', 1000
            FROM numbers(60000)"""
    )

    found = recent_errors(errors_read_at_most(reader, 10_000), "busy", start_s=BASE, end_s=END)
    assert [round(e.start_time_unix_nano / 1e9 - BASE) for e in found] == [599 - i for i in range(20)]
    assert [e.operation for e in found[:3]] == ["GET /0", "GET /0", "GET /0"]
    # Reaching back a day means reading the day's errors: refused here.
    with pytest.raises(DatabaseError, match="TOO_MANY_ROWS"):
        recent_errors(errors_read_at_most(reader, 10_000), "busy", start_s=BASE - 86400, end_s=END)


def test_dependencies_read_the_call_rollup_in_both_directions(reader: StoreReader) -> None:
    shop_and_payments(reader)
    assert not edges_recorded(reader.query)
    ServiceEdgeRollup(reader.client, reader.database).fill(BASE, BASE + 600)
    assert edges_recorded(reader.query)
    charge = Edge("payments", calls=2, errors=1, error_rate=0.5, mean_ms=90.0)
    assert dependencies(reader.query, "shop", start_s=BASE, end_s=END) == Dependencies(callers=[], callees=[charge])
    assert dependencies(reader.query, "payments", start_s=BASE, end_s=END) == Dependencies(
        callers=[Edge("shop", calls=2, errors=1, error_rate=0.5, mean_ms=90.0)], callees=[]
    )
    assert dependencies(reader.query, "shop", start_s=BASE + 240, end_s=END) == Dependencies([], [])


def test_a_service_is_known_while_the_rollup_holds_any_of_its_requests(reader: StoreReader) -> None:
    shop_and_payments(reader)
    assert service_known(reader.query, "shop")
    assert not service_known(reader.query, "nope")


def finding(id: str, service: str, status: str) -> Finding:
    return Finding(
        id=id, kind="service_regression", service=service, operation="", signal="error_rate", series=f"{service}|e",
        started_at=BASE, ended_at=None if status == "open" else BASE + 60, status=status,  # type: ignore[arg-type]
        severity="warning", score=1.0, baseline=0.0, observed=0.5, unit="ratio", summary="errors rose",
    )  # fmt: skip


def test_open_findings_are_counted_per_service_by_their_newest_state(reader: StoreReader) -> None:
    store = FindingStore(reader.client, reader.database)
    store.write([finding("f-1", "shop", "open"), finding("f-2", "shop", "open"), finding("f-3", "payments", "open")])
    store.write([finding("f-2", "shop", "closed")])
    assert open_findings_by_service(reader.query) == {"shop": 1, "payments": 1}


def put_minutes(reader: StoreReader, slo: SloDefinition, minutes: list[tuple[int, int, int]]) -> None:
    """Per-minute counts as the SLO counter writes them."""
    written = datetime.now(UTC)
    rows = [
        [slo.name, slo.counting_key, datetime.fromtimestamp(t, UTC), good, total, written] for t, good, total in minutes
    ]
    reader.client.insert(
        f"{reader.database}.slo_minutes",
        rows,
        column_names=["SloName", "CountingKey", "Minute", "Good", "Total", "UpdatedAt"],
    )


def test_slo_counts_summed_between_window_edges_give_the_same_status_as_every_minute(reader: StoreReader) -> None:
    day = SloDefinition(name="shop-day", service="shop", objective=99.0, window="1d")
    week = SloDefinition(name="shop-week", service="shop", objective=99.0, window="7d", operation="GET /cart")
    store = SloStore(reader.client, reader.database)
    now = float(BASE + 3600)
    # Two days ago everything failed for half an hour: inside the week, outside the day (which
    # must not count it, though its 3d burn window and the week's read reach back that far).
    # Then a quiet day, and the last ten minutes failing at 50%: the 5m and 1h windows burn fast.
    minutes = [(BASE - 48 * 3600 + 60 * i, 0, 100) for i in range(30)]
    minutes += [(BASE - 20 * 3600 + 60 * i, 100, 100) for i in range(0, 1200, 10)]
    minutes += [(BASE + 3000 + 60 * i, 50, 100) for i in range(10)]
    for slo in (day, week):
        store.put(slo, source="api")
        put_minutes(reader, slo, minutes)
    windows = sorted({day.window_s, week.window_s, *(parse_window(w) for w in BURN_WINDOWS)})
    wanted = [(slo.name, slo.counting_key, slo.window_s) for slo in (day, week)]
    day_counts, week_counts = slo_window_counts(reader.query, wanted, now=now, windows_s=windows)
    recent = [
        # Every tenth minute of the quiet day, between the edges it falls between.
        (now - 86400, 9000, 9000),
        (now - 21600, 2400, 2400),
        (now - 7200, 600, 600),
        # The failing minutes: five in the last 30 minutes but not the last 5, five in the last 5.
        (now - 1800, 250, 500),
        (now - 300, 250, 500),
    ]
    assert day_counts == SloWindowCounts(day.name, day.counting_key, recent)
    assert week_counts == SloWindowCounts(week.name, week.counting_key, [(now - 259200, 0, 3000), *recent])
    for slo, counts in ((day, day_counts), (week, week_counts)):
        status = evaluate(counts.rows, objective=99.0, window_s=slo.window_s, now=now, policy=policy_of(slo))
        assert status == slo_status(store, slo, now)
    assert slo_window_counts(reader.query, [], now=now, windows_s=windows) == []
