"""Detected deploys read from `service_versions`, a row per service and version, not from the RED
rollup's row per minute and operation: exact deploys, and a bound on the rows read."""

from __future__ import annotations

import time
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from vigil.store.client import Client
from vigil.store.deploys import DeployStore, detected_deploy_id
from vigil.store.migrate import migrate
from vigil.store.schema import DdlContext

# Two hours in the past: every minute is inside retention.
BASE = int(time.time()) // 3600 * 3600 - 7200


class ReadLimited:
    """The store client, with ClickHouse refusing any query that reads more than `max_rows` rows."""

    def __init__(self, client: Client, max_rows: int) -> None:
        self.client = client
        self.max_rows = max_rows

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        # In the statement, not the call's settings: the embedded client does not pass those on.
        limit = f"\nSETTINGS max_rows_to_read = {self.max_rows}, read_overflow_mode = 'throw'"
        return self.client.query(sql + limit, parameters=parameters)


def insert_entry_spans(client: Client, database: str, service: str, version: str, minutes: range) -> None:
    """Ten server spans a minute for each of three operations, in each of `minutes` after BASE."""
    client.command(
        f"""INSERT INTO {database}.spans
                (Timestamp, ServiceName, ServiceVersion, SpanName, SpanKind, StatusCode, TraceId, SpanId, Duration)
            SELECT toDateTime64({BASE} + 60 * {minutes.start} + number * 2, 9, 'UTC'), '{service}', '{version}',
                   ['GET /', 'POST /cart', 'GET /item'][number % 3 + 1], 'Server', 'Ok',
                   hex(number), hex(number), 1000000
            FROM numbers({30 * len(minutes)})"""
    )


@pytest.fixture
def store(chdb_client: Client, database: str) -> DeployStore:
    migrate(chdb_client, DdlContext(database=database))
    return DeployStore(chdb_client, database)


def test_a_version_that_follows_another_is_a_deploy_at_its_first_minute(store: DeployStore) -> None:
    client, database = store.client, store.database
    insert_entry_spans(client, database, "shop", "1.0", range(0, 60))
    insert_entry_spans(client, database, "shop", "1.1", range(30, 60))  # a canary beside 1.0
    insert_entry_spans(client, database, "shop", "1.2", range(50, 60))
    insert_entry_spans(client, database, "auth", "3.0", range(0, 60))  # one version: no deploy
    # Inserted out of order, the version's first minute is still its earliest.
    insert_entry_spans(client, database, "shop", "1.2", range(45, 46))

    deploys = store.query(start=BASE, end=BASE + 3600)

    assert [(d.id, d.service, d.version, d.started_at, d.detected, d.kind) for d in deploys] == [
        (detected_deploy_id("shop", "1.2"), "shop", "1.2", BASE + 45 * 60, True, "unknown"),
        (detected_deploy_id("shop", "1.1"), "shop", "1.1", BASE + 30 * 60, True, "unknown"),
    ]
    assert [d.version for d in store.query(service="shop", start=BASE, end=BASE + 40 * 60)] == ["1.1"]
    assert store.query(service="auth") == []
    assert store.get(detected_deploy_id("shop", "1.1")) == deploys[1]


def test_detected_deploys_read_a_row_per_version_not_the_rollup(store: DeployStore) -> None:
    client, database = store.client, store.database
    for version, first_minute in (("1.0", 0), ("1.1", 20), ("1.2", 40)):
        insert_entry_spans(client, database, "shop", version, range(first_minute, 60))
    [(rollup_rows,)] = client.query(f"SELECT count() FROM {database}.spans_red_1m").result_rows
    assert rollup_rows >= 3 * 60

    # Three versions of one service: three rows, however many minutes and operations they served.
    limited = DeployStore(ReadLimited(client, max_rows=3), database)  # type: ignore[arg-type]
    assert [(d.version, d.started_at) for d in limited.query(service="shop")] == [
        ("1.2", BASE + 40 * 60),
        ("1.1", BASE + 20 * 60),
    ]
    # The bound is real: the same answer from the rollup is refused.
    with pytest.raises(DatabaseError, match="TOO_MANY_ROWS"):
        ReadLimited(client, max_rows=3).query(
            f"SELECT ServiceVersion, min(Minute) FROM {database}.spans_red_1m GROUP BY ServiceVersion"
        )
