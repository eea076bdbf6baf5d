"""Shared fixtures: one embedded ClickHouse per test session, one database per test.

chDB allows one data directory per process, so tests isolate by database name.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vigil.server import ROLES, Ports, Vigil
from vigil.settings import Settings, load_settings
from vigil.store.client import Client, open_client
from vigil.store.migrate import ddl_context, migrate


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture(scope="session")
def chdb_client(chdb_url: str) -> Client:
    return open_client(chdb_url)


# Databases of finished tests in this worker, emptied and waiting for the next test.
_REUSABLE: list[str] = []
_REFERENCE_DATABASE = "t_reference_schema"
# When each reusable database's schema was last found equal to the reference (unix seconds).
_CHECKED_AT: dict[str, int] = {}


@functools.cache
def _reference_schema(client: Client) -> dict[str, tuple[str, str]]:
    """Each table's engine and CREATE statement as a fresh migration with default settings makes them."""
    migrate(client, ddl_context(load_settings(), _REFERENCE_DATABASE))
    return _schema(client, _REFERENCE_DATABASE)


@functools.cache
def _deduplicating_tables(client: Client) -> frozenset[str]:
    """Tables that remember recent inserts' hashes: emptied even when they hold no rows, as a
    TRUNCATE also forgets the hashes, so the next test's identical rows are not taken for retries."""
    return frozenset(
        table for table, (_, query) in _reference_schema(client).items() if "deduplication_window" in query
    )


def _schema(client: Client, database: str) -> dict[str, tuple[str, str]]:
    rows = client.query(
        "SELECT name, engine, create_table_query FROM system.tables WHERE database = {database:String}",
        parameters={"database": database},
    ).result_rows
    return {name: (engine, query.replace(f"{database}.", "<db>.")) for name, engine, query in rows}


def _unchanged_since_checked(client: Client, database: str) -> bool:
    """No table of `database` was created, dropped or altered since its schema was last compared.

    The full comparison formats every CREATE statement (about 23 ms, most of a handover); the
    tables' metadata times are whole seconds, so only a database whose every table is older than
    the second of the last comparison is certainly unchanged.
    """
    checked_at = _CHECKED_AT.get(database)
    if checked_at is None:
        return False
    ((tables, newest),) = client.query(
        "SELECT count(), max(toUnixTimestamp(metadata_modification_time)) FROM system.tables"
        " WHERE database = {database:String}",
        parameters={"database": database},
    ).result_rows
    return int(tables) == len(_reference_schema(client)) and int(newest) < checked_at


def _emptied(client: Client, database: str) -> bool:
    """Empty `database` for another test, if its schema is exactly the default one (a test may have
    changed settings, tables or migrations; such a database is left alone)."""
    if not _unchanged_since_checked(client, database):
        checked_at = int(time.time())
        if _schema(client, database) != _reference_schema(client):
            _CHECKED_AT.pop(database, None)
            return False
        _CHECKED_AT[database] = checked_at
    # Tables with rows, and those that remember inserts; views hold nothing of their own.
    holding = client.query(
        "SELECT name FROM system.tables WHERE database = {database:String}"
        " AND engine NOT IN ('MaterializedView', 'View') AND name != 'schema_migrations'"
        " AND (total_rows IS NULL OR total_rows > 0 OR has({deduplicating:Array(String)}, name))",
        parameters={"database": database, "deduplicating": sorted(_deduplicating_tables(client))},
    ).result_rows
    for (table,) in holding:
        client.command(f"TRUNCATE TABLE `{database}`.`{table}`")
    return True


def new_database_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def database(chdb_client: Client) -> Iterator[str]:
    """A database for this test alone. Migrating one takes about 0.4 s of the embedded store's CPU,
    so a finished test's database is emptied and handed to the next test in this worker."""
    name = _REUSABLE.pop() if _REUSABLE else new_database_name()
    yield name
    try:
        if _emptied(chdb_client, name):
            _REUSABLE.append(name)
    except Exception:  # a store a test broke on purpose: the next test gets a fresh database
        pass


@pytest.fixture
def stop_merges(chdb_client: Client, database: str) -> Iterator[Callable[[str], None]]:
    """`stop_merges(table)` stops merges of `database.table` until the test ends, as under ingest
    before ClickHouse merges the parts; they start again before the database is handed on."""
    stopped: list[str] = []

    def stop(table: str) -> None:
        chdb_client.command(f"SYSTEM STOP MERGES `{database}`.`{table}`")
        stopped.append(table)

    yield stop
    for table in stopped:
        chdb_client.command(f"SYSTEM START MERGES `{database}`.`{table}`")


@dataclass
class RunningVigil:
    settings: Settings
    ports: Ports
    vigil: Vigil
    loop: asyncio.AbstractEventLoop

    def flush(self) -> None:
        """Wait until every acknowledged row is in ClickHouse (inserts are asynchronous)."""
        assert asyncio.run_coroutine_threadsafe(self.vigil.flush(), self.loop).result(timeout=60)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.ports.otlp_http}"

    @property
    def otlp_grpc(self) -> str:
        return f"127.0.0.1:{self.ports.otlp_grpc}"


def start_vigil(settings: Settings, roles: frozenset[str] = ROLES) -> tuple[RunningVigil, threading.Thread]:
    """Run a Vigil (by default every role) on a private event loop in a thread, on free ports."""
    loop = asyncio.new_event_loop()
    vigil = Vigil(settings, roles)
    thread = threading.Thread(target=loop.run_forever, name="vigil-test-loop", daemon=True)
    thread.start()
    running = RunningVigil(settings, Ports(http=0, otlp_http=0, otlp_grpc=0), vigil, loop)
    try:
        running.ports = asyncio.run_coroutine_threadsafe(vigil.start(), loop).result(timeout=60)
    except BaseException:
        # As `vigil serve` does: what started is stopped, so no socket or thread outlives the failure
        # (a leaked socket's ResourceWarning would fail whichever test the collector runs next).
        stop_vigil(running, thread)
        raise
    return running, thread


def stop_vigil(running: RunningVigil, thread: threading.Thread) -> None:
    asyncio.run_coroutine_threadsafe(running.vigil.shutdown(), running.loop).result(timeout=60)
    running.loop.call_soon_threadsafe(running.loop.stop)
    thread.join(timeout=10)
    running.loop.close()


@pytest.fixture
def vigil_settings(chdb_url: str, database: str, tmp_path: Path) -> dict[str, Any]:
    """Overrides for a test's Vigil; a test may change them before asking for `vigil_server`."""
    return {
        "clickhouse_url": chdb_url,
        "clickhouse_database": database,
        "http_port": 0,
        "otlp_http_port": 0,
        "otlp_grpc_port": 0,
        "statsd_port": 0,
        "netflow_port": 0,
        "ipfix_port": 0,
        "statsd_flush_interval": "100ms",
        "collector_processes": 0,
        "max_batch_age": "5ms",
        "wal_dir": str(tmp_path / "wal"),
        "insert_interval": "20ms",
        # Vigil's own metric rows would join every test's data at a moment of their own; the
        # self-monitoring tests take samples themselves.
        "self_metrics_interval": 0,
    }


@pytest.fixture
def vigil_server(vigil_settings: dict[str, Any]) -> Iterator[RunningVigil]:
    running, thread = start_vigil(load_settings(**vigil_settings))
    try:
        yield running
    finally:
        stop_vigil(running, thread)


@pytest.fixture
def quiet_vigil(vigil_settings: dict[str, Any]) -> Iterator[RunningVigil]:
    """A Vigil without its own detector and alert threads: tests drive them over past buckets."""
    running, thread = start_vigil(load_settings(**vigil_settings, detectors_enabled=False))
    try:
        yield running
    finally:
        stop_vigil(running, thread)


def vigil_with_prefixes(vigil_settings: dict[str, Any], directory: Path, prefixes: str) -> Iterator[RunningVigil]:
    """A Vigil whose VIGIL_PREFIX_FILE holds `prefixes` (CSV); for fixtures of flow tests."""
    prefix_file = directory / "prefixes.csv"
    prefix_file.write_text(prefixes)
    running, thread = start_vigil(load_settings(**vigil_settings, prefix_file=str(prefix_file)))
    try:
        yield running
    finally:
        stop_vigil(running, thread)
