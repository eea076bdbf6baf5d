from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from tests.conftest import new_database_name
from tests.store.test_service_read import ByServiceOnly
from vigil.store.client import Client
from vigil.store.migrate import applied_versions, migrate
from vigil.store.read import ServiceSummary, StoreReader
from vigil.store.schema import MIGRATIONS, DdlContext, create_table_statements, migrations_table_statement
from vigil.store.service_read import ServiceSeries, recent_errors, service_series

EXPECTED_TABLES = [
    "alert_groups",
    "alert_outbox",
    "alert_rules",
    "alerts",
    "canary_analyses",
    "deploys",
    "detector_state",
    "error_spans",
    "error_spans_mv",
    "findings",
    "flow_exporters",
    "flow_ports_1m",
    "flow_ports_1m_mv",
    "flows",
    "flows_1m",
    "flows_1m_mv",
    "leases",
    "log_patterns_1m",
    "log_patterns_1m_mv",
    "logs",
    "metrics_catalog",
    "metrics_exp_histogram",
    "metrics_exp_histogram_catalog_mv",
    "metrics_gauge",
    "metrics_gauge_catalog_mv",
    "metrics_histogram",
    "metrics_histogram_catalog_mv",
    "metrics_sum",
    "metrics_sum_catalog_mv",
    "metrics_summary",
    "metrics_summary_catalog_mv",
    "request_digests",
    "schema_migrations",
    "service_edges_1m",
    "service_versions",
    "service_versions_mv",
    "silences",
    "slo_minutes",
    "slos",
    "spans",
    "spans_red_1m",
    "spans_red_1m_mv",
    "spans_trace_id_ts",
    "spans_trace_id_ts_mv",
]


@pytest.fixture
def database() -> str:
    """A database never used before (the shared fixture may hand out an emptied, migrated one)."""
    return new_database_name()


def tables(client: Client, database: str) -> list[str]:
    rows = client.query(
        "SELECT name FROM system.tables WHERE database = {d:String} ORDER BY name", parameters={"d": database}
    ).result_rows
    return [row[0] for row in rows]


def migrate_before(client: Client, ctx: DdlContext, version: int) -> None:
    """The schema as a Vigil that knew the migrations before `version` left it."""
    earlier = tuple(m for m in MIGRATIONS if m.version < version)
    client.command(f"CREATE DATABASE IF NOT EXISTS {ctx.database}")
    for migration in earlier:
        for obj in migration.objects:
            for statement in create_table_statements(obj, ctx):
                client.command(statement)
    client.command(migrations_table_statement(ctx))
    client.command(
        f"INSERT INTO {ctx.database}.schema_migrations (version, name) VALUES "
        + ", ".join(f"({m.version}, '')" for m in earlier)
    )


def test_migrations_create_every_table_and_record_their_versions(chdb_client: Client, database: str) -> None:
    applied = migrate(chdb_client, DdlContext(database=database))
    assert applied == [m.version for m in MIGRATIONS]
    assert tables(chdb_client, database) == EXPECTED_TABLES
    assert applied_versions(chdb_client, DdlContext(database=database)) == list(range(1, 19))


def test_running_migrations_again_applies_nothing_and_changes_nothing(chdb_client: Client, database: str) -> None:
    ctx = DdlContext(database=database)
    migrate(chdb_client, ctx)
    assert migrate(chdb_client, ctx) == []
    assert tables(chdb_client, database) == EXPECTED_TABLES
    assert chdb_client.query(f"SELECT count() FROM {database}.schema_migrations").result_rows == [(len(MIGRATIONS),)]


def test_a_half_applied_migration_is_completed_on_the_next_start(chdb_client: Client, database: str) -> None:
    ctx = DdlContext(database=database)
    migrate(chdb_client, ctx)
    # As if the process died after some statements but before recording the version.
    chdb_client.command(f"DROP TABLE {database}.spans_red_1m_mv")
    chdb_client.command(
        f"ALTER TABLE {database}.schema_migrations DELETE WHERE version = 1 SETTINGS mutations_sync = 1"
    )
    assert migrate(chdb_client, ctx) == [1]
    assert tables(chdb_client, database) == EXPECTED_TABLES


def test_retention_follows_the_setting_on_each_start(chdb_client: Client, database: str) -> None:
    migrate(chdb_client, DdlContext(database=database, traces_retention_days=7))
    migrate(
        chdb_client,
        DdlContext(
            database=database,
            traces_retention_days=3,
            logs_retention_days=5,
            metrics_retention_days=9,
            flows_retention_days=4,
        ),
    )
    rows = chdb_client.query(
        "SELECT name, extract(create_table_query, 'TTL (.+?) SETTINGS') FROM system.tables "
        "WHERE database = {d:String} AND engine LIKE '%MergeTree' AND name != 'schema_migrations' ORDER BY name",
        parameters={"d": database},
    ).result_rows
    assert rows == [
        # Findings, alerts, deploys, canary verdicts and detector state are small and kept: they
        # are the incident history.
        ("alert_groups", ""),
        ("alert_outbox", ""),
        ("alert_rules", ""),
        ("alerts", ""),
        ("canary_analyses", ""),
        ("deploys", ""),
        ("detector_state", ""),
        ("error_spans", "toDateTime(Timestamp) + toIntervalDay(3)"),
        ("findings", ""),
        ("flow_exporters", "toDateTime(Time) + toIntervalDay(4)"),
        ("flow_ports_1m", "Minute + toIntervalDay(4)"),
        ("flows", "toDateTime(TimeReceived) + toIntervalDay(4)"),
        ("flows_1m", "Minute + toIntervalDay(4)"),
        ("leases", ""),
        ("log_patterns_1m", "Minute + toIntervalDay(5)"),
        ("logs", "toDateTime(Timestamp) + toIntervalDay(5)"),
        ("metrics_catalog", "Day + toIntervalDay(9)"),
        ("metrics_exp_histogram", "toDateTime(TimeUnix) + toIntervalDay(9)"),
        ("metrics_gauge", "toDateTime(TimeUnix) + toIntervalDay(9)"),
        ("metrics_histogram", "toDateTime(TimeUnix) + toIntervalDay(9)"),
        ("metrics_sum", "toDateTime(TimeUnix) + toIntervalDay(9)"),
        ("metrics_summary", "toDateTime(TimeUnix) + toIntervalDay(9)"),
        # Request digests are kept an hour whatever the retention: dedup windows are minutes.
        ("request_digests", "toDateTime(InsertedAt) + toIntervalHour(1)"),
        ("service_edges_1m", "Minute + toIntervalDay(3)"),
        ("service_versions", "LastMinute + toIntervalDay(3)"),
        ("silences", ""),
        ("slo_minutes", "Minute + toIntervalDay(100)"),
        ("slos", ""),
        ("spans", "toDateTime(Timestamp) + toIntervalDay(3)"),
        ("spans_red_1m", "Minute + toIntervalDay(3)"),
        ("spans_trace_id_ts", "toDateTime(Start) + toIntervalDay(3)"),
    ]


def test_logs_written_before_templates_existed_keep_them_and_read_as_template_zero(
    chdb_client: Client, database: str
) -> None:
    ctx = DdlContext(database=database)
    migrate_before(chdb_client, ctx, 6)
    chdb_client.command(f"INSERT INTO {database}.logs (Timestamp, ServiceName, Body) VALUES (now(), 'api', 'old line')")

    assert migrate(chdb_client, ctx) == [6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]
    rows = chdb_client.query(f"SELECT Body, TemplateId, Template FROM {database}.logs").result_rows
    assert rows == [("old line", 0, "")]


def test_service_versions_are_filled_from_the_rollup_written_before_they_existed(
    chdb_client: Client, database: str
) -> None:
    ctx = DdlContext(database=database)
    migrate_before(chdb_client, ctx, 16)
    chdb_client.command(
        f"""INSERT INTO {database}.spans (Timestamp, ServiceName, ServiceVersion, SpanName, SpanKind, Duration)
            VALUES ('2026-11-20 10:00:05', 'shop', '1.0', 'GET /', 'Server', 1),
                   ('2026-11-20 10:30:10', 'shop', '1.1', 'GET /', 'Server', 1),
                   ('2026-11-20 10:31:00', 'shop', '1.1', 'POST /', 'Server', 1),
                   ('2026-11-20 10:40:00', 'shop', '', 'GET /', 'Server', 1)"""
    )

    assert migrate(chdb_client, ctx) == [16, 17, 18]
    # A request after the migration reaches the table through the view; one before it, through the backfill.
    chdb_client.command(
        f"""INSERT INTO {database}.spans (Timestamp, ServiceName, ServiceVersion, SpanName, SpanKind, Duration)
            VALUES ('2026-11-20 11:00:00', 'shop', '1.1', 'GET /', 'Server', 1)"""
    )
    versions = f"""SELECT ServiceName, ServiceVersion, toString(min(FirstMinute)), toString(max(LastMinute))
                   FROM {database}.service_versions GROUP BY ServiceName, ServiceVersion ORDER BY ServiceVersion"""
    expected = [
        ("shop", "1.0", "2026-11-20 10:00:00", "2026-11-20 10:00:00"),
        ("shop", "1.1", "2026-11-20 10:30:00", "2026-11-20 11:00:00"),
    ]
    assert chdb_client.query(versions).result_rows == expected

    # A migration interrupted after its backfill is run again whole: the second backfill changes nothing.
    chdb_client.command(
        f"ALTER TABLE {database}.schema_migrations DELETE WHERE version = 16 SETTINGS mutations_sync = 1"
    )
    assert migrate(chdb_client, ctx) == [16]
    assert chdb_client.query(versions).result_rows == expected


def test_error_spans_are_filled_from_the_spans_written_before_they_existed_and_read_once_after_a_rerun(
    chdb_client: Client, database: str, stop_merges: Callable[[str], None]
) -> None:
    ctx = DdlContext(database=database)
    migrate_before(chdb_client, ctx, 17)
    chdb_client.command(
        f"""INSERT INTO {database}.spans
                (Timestamp, ServiceName, SpanName, SpanKind, StatusCode, StatusMessage, TraceId, SpanId, Duration)
            VALUES ('2026-11-20 10:00:05', 'shop', 'GET /', 'Server', 'Error', 'boom', 't1', 's1', 7),
                   ('2026-11-20 10:00:06', 'shop', 'GET /', 'Server', 'Ok', '', 't2', 's2', 1),
                   ('2026-11-20 10:00:07', 'shop', 'query', 'Client', 'Error', 'timeout', 't3', 's3', 9)"""
    )
    assert migrate(chdb_client, ctx) == [17, 18]
    # An error after the migration reaches the table through the view; those before it, through the backfill.
    chdb_client.command(
        f"""INSERT INTO {database}.spans
                (Timestamp, ServiceName, SpanName, SpanKind, StatusCode, StatusMessage, TraceId, SpanId, Duration)
            VALUES ('2026-11-20 10:00:08', 'shop', 'GET /', 'Server', 'Error', 'again', 't4', 's4', 5)"""
    )
    start_s = datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp()
    reader = StoreReader(chdb_client, database)

    def newest_errors() -> list[tuple[str, str, str]]:
        found = recent_errors(reader.query, "shop", start_s=start_s, end_s=start_s + 60)
        return [(e.trace_id, e.operation, e.status_message) for e in found]

    expected = [("t4", "GET /", "again"), ("t3", "query", "timeout"), ("t1", "GET /", "boom")]
    assert newest_errors() == expected

    # A migration interrupted after its backfill is run again whole: each error is stored twice
    # until a merge (none runs here) replaces the copies, and is listed once.
    stop_merges("error_spans")
    chdb_client.command(
        f"ALTER TABLE {database}.schema_migrations DELETE WHERE version = 17 SETTINGS mutations_sync = 1"
    )
    assert migrate(chdb_client, ctx) == [17]
    assert chdb_client.query(f"SELECT count() FROM {database}.error_spans").result_rows == [(6,)]
    assert newest_errors() == expected


def test_the_rollup_written_before_its_per_service_projection_is_read_alike_and_then_through_it(
    chdb_client: Client, database: str
) -> None:
    ctx = DdlContext(database=database)
    migrate_before(chdb_client, ctx, 18)
    chdb_client.command(
        f"""INSERT INTO {database}.spans (Timestamp, ServiceName, ServiceVersion, SpanName, SpanKind, Duration)
            VALUES ('2026-11-20 10:00:05', 'shop', '1.0', 'GET /', 'Server', 10000000),
                   ('2026-11-20 10:00:10', 'shop', '1.0', 'POST /', 'Server', 30000000),
                   ('2026-11-20 10:02:00', 'shop', '1.1', 'GET /', 'Server', 50000000)"""
    )
    start_s = datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp()
    reader = StoreReader(chdb_client, database)

    def series(read: StoreReader) -> ServiceSeries:
        return service_series(read.query, "shop", start_s=start_s, end_s=start_s + 599, step=120)

    before = series(reader)
    assert before.summary == ServiceSummary("shop", 3, round(3 / 599, 3), 0.0, 30.0, 50.0, 50.0)

    assert migrate(chdb_client, ctx) == [18]
    # The parts stored before are given the projection in the background; until then they are
    # read as before, and after it through the projection, with the same figures.
    assert series(reader) == before
    for _ in range(100):  # bounded: 10 s
        pending = chdb_client.query(
            f"SELECT count() FROM system.mutations WHERE database = '{database}' AND NOT is_done"
        ).result_rows
        if pending == [(0,)]:
            break
        time.sleep(0.1)
    assert series(ByServiceOnly(chdb_client, database)) == before

    # Run again (interrupted before its version was recorded), it changes nothing.
    chdb_client.command(
        f"ALTER TABLE {database}.schema_migrations DELETE WHERE version = 18 SETTINGS mutations_sync = 1"
    )
    assert migrate(chdb_client, ctx) == [18]
    assert series(reader) == before
