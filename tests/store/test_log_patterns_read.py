"""Log volume and pattern queries over log rows written straight into the store: exact buckets."""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
import pytest

from vigil.store.client import Client
from vigil.store.log_patterns_read import (
    LogVolume,
    VolumeBucket,
    log_patterns,
    log_services,
    log_volume,
    newest_window_start,
    pattern_counts,
)
from vigil.store.migrate import migrate
from vigil.store.read import StoreReader
from vigil.store.schema import LOG_TEMPLATE_FIELDS, LOGS_ARROW_SCHEMA, DdlContext
from vigil.store.write import StoreWriter
from vigil.types import rows_table

# A whole hour in the past, so every minute used is inside retention and closed.
BASE = int(time.time()) // 3600 * 3600 - 3600
TRACE = "5b8efff798038103d269b633813fc60c"
SCHEMA = pa.schema([*LOGS_ARROW_SCHEMA, *(pa.field(name, kind) for name, kind in LOG_TEMPLATE_FIELDS)])


def log_rows(logs: list[dict[str, Any]]) -> pa.Table:
    """Rows given as `at` (seconds after BASE), `service`, `severity` (number), `body`, `template` id."""
    rows = []
    for log in logs:
        at = (BASE + log["at"]) * 1_000_000_000
        rows.append(
            {
                "Timestamp": at,
                "ObservedTimestamp": at,
                "TraceId": log.get("trace_id", ""),
                "SpanId": "",
                "TraceFlags": 0,
                "SeverityText": "",
                "SeverityNumber": log["severity"],
                "ServiceName": log["service"],
                "ServiceVersion": "",
                "Body": log["body"],
                "BodyType": "",
                "EventName": "",
                "ResourceAttributes": [],
                "ResourceAttributeTypes": [],
                "ScopeName": "",
                "ScopeVersion": "",
                "LogAttributes": [],
                "LogAttributeTypes": [],
                "TemplateId": log["template"],
                "Template": f"template {log['template']}",
            }
        )
    return rows_table(SCHEMA, rows)


LOGS = [
    {"at": 5, "service": "a", "severity": 9, "body": "Order 1 accepted", "template": 1},
    {"at": 6, "service": "a", "severity": 9, "body": "order 2 accepted", "template": 1},
    {"at": 7, "service": "a", "severity": 13, "body": "disk 100% full", "template": 2},
    {"at": 65, "service": "a", "severity": 17, "body": "order 3 failed", "template": 3, "trace_id": TRACE},
    {"at": 66, "service": "a", "severity": 21, "body": "order 4 crashed", "template": 3},
    {"at": 70, "service": "b", "severity": 5, "body": "order cache warm", "template": 1},
    {"at": 190, "service": "a", "severity": 0, "body": "unset severity", "template": 4},
]


@pytest.fixture
def reader(chdb_client: Client, database: str) -> StoreReader:
    migrate(chdb_client, DdlContext(database=database))
    StoreWriter(chdb_client, database).insert("logs", log_rows(LOGS))
    return StoreReader(chdb_client, database)


def volume(reader: StoreReader, **filters: Any) -> LogVolume:
    return log_volume(reader.query, start_s=BASE, end_s=BASE + 300, step_s=120, **filters)


def test_volume_comes_from_the_rollup_per_bucket_and_severity_class(reader: StoreReader) -> None:
    assert volume(reader) == LogVolume(
        120,
        "log_patterns_1m",
        [
            VolumeBucket(BASE, "other", 3),
            VolumeBucket(BASE, "warn", 1),
            VolumeBucket(BASE, "error", 2),
            VolumeBucket(BASE + 120, "other", 1),
        ],
    )
    assert volume(reader, service="b").buckets == [VolumeBucket(BASE, "other", 1)]
    assert volume(reader, template_id=3).buckets == [VolumeBucket(BASE, "error", 2)]
    assert volume(reader, min_severity=13).buckets == [VolumeBucket(BASE, "warn", 1), VolumeBucket(BASE, "error", 2)]
    assert volume(reader, min_severity=17, service="a").buckets == [VolumeBucket(BASE, "error", 2)]


def test_volume_counts_log_rows_for_text_trace_and_thresholds_the_rollup_cannot_split(reader: StoreReader) -> None:
    by_text = volume(reader, text="ORDER")
    assert by_text == LogVolume(120, "logs", [VolumeBucket(BASE, "other", 3), VolumeBucket(BASE, "error", 2)])
    # LIKE's wildcards in the text are taken literally.
    assert volume(reader, text="100%").buckets == [VolumeBucket(BASE, "warn", 1)]
    assert volume(reader, text="o_der").buckets == []
    assert volume(reader, trace_id=TRACE).buckets == [VolumeBucket(BASE, "error", 1)]
    # INFO and above leaves out DEBUG and unset; FATAL leaves out ERROR.
    assert volume(reader, min_severity=9) == LogVolume(
        120,
        "logs",
        [VolumeBucket(BASE, "other", 2), VolumeBucket(BASE, "warn", 1), VolumeBucket(BASE, "error", 2)],
    )
    assert volume(reader, min_severity=21).buckets == [VolumeBucket(BASE, "error", 1)]
    # The rows' own window, not whole minutes: the first two lines are before BASE + 6.5.
    rows = log_volume(reader.query, start_s=BASE + 6.5, end_s=BASE + 300, step_s=120, text="order")
    assert rows.buckets == [VolumeBucket(BASE, "other", 1), VolumeBucket(BASE, "error", 2)]


def test_pattern_counts_per_bucket_and_services(reader: StoreReader) -> None:
    counts = pattern_counts(reader.query, [("a", 1), ("a", 3), ("b", 1)], start_s=BASE, end_s=BASE + 300, step_s=60)
    assert counts == {("a", 1): {BASE: 2}, ("a", 3): {BASE + 60: 2}, ("b", 1): {BASE + 60: 1}}
    # Service a's template 1 only, though b logged template 1 too.
    assert pattern_counts(reader.query, [("a", 1)], start_s=BASE, end_s=BASE + 300, step_s=300) == {("a", 1): {BASE: 2}}
    assert pattern_counts(reader.query, [], start_s=BASE, end_s=BASE + 300, step_s=60) == {}
    assert log_services(reader.query, start_s=BASE, end_s=BASE + 300) == ["a", "b"]
    assert log_services(reader.query, start_s=BASE + 120, end_s=BASE + 300) == ["a"]


def test_patterns_filtered_by_minimum_severity(reader: StoreReader) -> None:
    def keys(min_severity: int | None) -> list[tuple[str, int, int]]:
        patterns = log_patterns(reader.query, start_s=BASE, end_s=BASE + 300, min_severity=min_severity)
        return [(p.service, p.template_id, p.count) for p in patterns]

    assert keys(None) == [("a", 1, 2), ("a", 3, 2), ("a", 2, 1), ("a", 4, 1), ("b", 1, 1)]
    assert keys(13) == [("a", 3, 2), ("a", 2, 1)]
    assert keys(21) == [("a", 3, 2)]


def test_the_newest_lines_begin_in_the_last_minutes_that_hold_them(reader: StoreReader) -> None:
    def start(lines: int, end_s: float = BASE + 300, **filters: Any) -> float:
        return newest_window_start(reader.query, start_s=BASE - 60, end_s=end_s, lines=lines, **filters)

    assert [start(lines) for lines in (1, 2, 4, 5, 7, 8)] == [BASE + 180, BASE + 60, BASE + 60, BASE, BASE, BASE - 60]
    assert start(2, min_severity=17) == BASE + 60
    assert start(1, min_severity=13) == BASE + 60
    assert start(1, service="b") == BASE + 60
    assert start(2, template_id=1) == BASE
    # The minute holding the end is not counted: some of its lines may come after the end.
    assert start(1, end_s=BASE + 190) == BASE + 60
    # INFO and above certainly holds the WARN and ERROR lines; FATAL cannot be told from ERROR.
    assert start(1, min_severity=9) == BASE + 60
    assert start(3, min_severity=9) == BASE
    assert start(1, min_severity=21) == BASE - 60
