"""The embedded client: a free handle per call, so queries run side by side; inserts yield to queries."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pyarrow.ipc as ipc
import pytest

from tests.collector.test_wal import span_rows
from tests.waiting import wait_until
from vigil.store.client import INSERT_PRIORITY, READ_PRIORITY, Client, HandlePool, query_thread_limit, query_threads
from vigil.store.migrate import migrate
from vigil.store.schema import DdlContext
from vigil.store.write import StoreWriter

# ClickHouse caps a query's sleeping at 3 s a block: one row a block makes this one last 2.9 s
# unless killed, which every test here does once it has seen what it came for.
SLOW_QUERY = "SELECT sleepEachRow(0.1), {marker:String} FROM numbers(29) SETTINGS max_block_size = 1"


def running(client: Client, marker: str) -> int:
    """How many queries carrying `marker` ClickHouse is running now (this one excluded)."""
    rows = client.query(
        "SELECT count() FROM system.processes "
        "WHERE query LIKE {pattern:String} AND query NOT LIKE '%system.processes%'",
        parameters={"pattern": f"%{marker}%"},
    ).result_rows
    return int(rows[0][0])


def preempted(client: Client) -> int:
    """Times ClickHouse paused a query for one of higher priority, since the engine opened."""
    rows = client.query("SELECT value FROM system.events WHERE event = 'QueryPreempted'").result_rows
    return int(rows[0][0]) if rows else 0


@pytest.fixture
def slow_query(chdb_client: Client) -> Iterator[str]:
    """A query started on a thread of its own and killed at the end of the test; yields its marker."""
    marker = uuid.uuid4().hex

    def run() -> None:
        with contextlib.suppress(Exception):  # killed at the end, as intended
            chdb_client.query(SLOW_QUERY, parameters={"marker": marker})

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield marker
    finally:
        chdb_client.command(f"KILL QUERY WHERE query LIKE '%{marker}%' AND query NOT LIKE '%KILL QUERY%' SYNC")
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_thread_s_query_runs_while_another_thread_s_query_is_still_running(
    chdb_client: Client, slow_query: str
) -> None:
    # A client with one handle would run this only after the slow query ended, and then find it gone.
    assert wait_until(lambda: running(chdb_client, slow_query) == 1, timeout_s=2)


def test_every_query_runs_at_read_priority_on_every_thread(chdb_client: Client) -> None:
    def priority() -> object:
        return chdb_client.query("SELECT getSetting('priority')").result_rows

    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(priority()))
    thread.start()
    thread.join()
    assert priority() == [(READ_PRIORITY,)]
    assert seen == [[(READ_PRIORITY,)]]
    assert READ_PRIORITY < INSERT_PRIORITY  # smaller runs first


def max_threads(client: Client) -> int:
    return int(client.query("SELECT getSetting('max_threads')").result_rows[0][0])


def test_query_threads_sets_max_threads_for_this_thread_s_calls_only(chdb_client: Client) -> None:
    default = max_threads(chdb_client)
    other_thread: list[int] = []
    with query_threads(default + 1):
        inside = (max_threads(chdb_client), query_thread_limit())
        command = chdb_client.command("SELECT getSetting('max_threads')")
        # A thread of its own keeps ClickHouse's default meanwhile.
        thread = threading.Thread(target=lambda: other_thread.append(max_threads(chdb_client)))
        thread.start()
        thread.join()
    assert inside == (default + 1, default + 1)
    assert int(command) == default + 1
    assert other_thread == [default]
    assert (max_threads(chdb_client), query_thread_limit()) == (default, None)


def test_query_threads_keeps_a_call_s_own_settings(chdb_client: Client) -> None:
    with query_threads(1):
        rows = chdb_client.query(
            "SELECT getSetting('max_threads'), getSetting('max_block_size')", settings={"max_block_size": 1000}
        ).result_rows
    assert rows == [(1, 1000)]


def test_query_threads_refuses_fewer_than_one_thread() -> None:
    with pytest.raises(ValueError, match="at least one thread, not 0"), query_threads(0):
        pass


@pytest.mark.parametrize("path", ["arrow", "files"])
def test_an_insert_pauses_while_a_query_runs_and_then_stores_every_row(
    chdb_client: Client, database: str, tmp_path: Path, slow_query: str, path: str
) -> None:
    migrate(chdb_client, DdlContext(database=database))
    writer = StoreWriter(chdb_client, database, local_files=path == "files")
    rows = span_rows(20).rows
    assert wait_until(lambda: running(chdb_client, slow_query) == 1, timeout_s=2)
    before = preempted(chdb_client)
    if path == "arrow":
        writer.insert("spans", rows, dedup_token="pause-test")
    else:  # as the inserter does on an embedded store: ClickHouse reads the log's file itself
        with ipc.new_stream(str(tmp_path / "0.arrow"), rows.schema) as stream:
            stream.write_table(rows)
        writer.insert_files("spans", tmp_path, ["0.arrow"], rows=20, dedup_token="pause-test")
    assert preempted(chdb_client) > before
    assert chdb_client.query(f"SELECT count() FROM {database}.spans").result_rows == [(20,)]


def test_spare_handles_opened_ahead_serve_that_many_calls_at_once_without_opening_more(
    chdb_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pool of its own on the same engine: it starts with one handle, whatever other tests opened.
    pool = HandlePool(cast(HandlePool, chdb_client).path, {})
    pool.open_spares(5)  # four slow queries, and the polls that watch them
    opened: list[Client] = []
    open_one = pool._open

    def counted() -> Client:
        opened.append(open_one())
        return opened[-1]

    monkeypatch.setattr(pool, "_open", counted)
    marker = uuid.uuid4().hex

    def run() -> None:
        with contextlib.suppress(Exception):  # killed below, as intended
            pool.query(SLOW_QUERY, parameters={"marker": marker})

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        assert wait_until(lambda: running(cast(Client, pool), marker) == 4, timeout_s=5)
    finally:
        chdb_client.command(f"KILL QUERY WHERE query LIKE '%{marker}%' AND query NOT LIKE '%KILL QUERY%' SYNC")
        for thread in threads:
            thread.join(timeout=10)
    pool.open_spares(5)  # every handle came back
    assert opened == []
