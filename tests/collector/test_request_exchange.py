"""Request digests traded between hosts through ClickHouse (`RequestExchange`), on the embedded store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.collector.request_dedup import DedupConfig, JournalTail, RequestDedup, journal_line, read_journal
from vigil.collector.request_exchange import FLEET_JOURNAL, RequestExchange
from vigil.errors import StoreUnavailable
from vigil.store.client import Client
from vigil.store.migrate import migrate
from vigil.store.schema import DdlContext

WINDOW_S = 600.0


@pytest.fixture
def exchanges(chdb_client: Client, database: str, tmp_path: Path) -> Iterator[dict[str, RequestExchange]]:
    migrate(chdb_client, DdlContext(database=database))
    made = {
        host: RequestExchange(tmp_path / host, lambda: chdb_client, database, host, window_s=WINDOW_S, interval_s=3600)
        for host in ("host-a", "host-b")
    }
    for exchange in made.values():
        exchange.start()
    yield made
    for exchange in made.values():
        exchange.shutdown()


def journal(directory: Path, name: str, entries: list[tuple[float, bytes]]) -> None:
    with (directory / name).open("ab") as file:
        file.write(b"".join(journal_line(stamp, digest) for stamp, digest in entries))


def fleet(exchange: RequestExchange) -> list[tuple[float, bytes]]:
    return read_journal(exchange.fleet_journal, JournalTail())


def test_digests_journaled_on_one_host_reach_the_other_hosts_fleet_journal_with_their_stored_times(
    exchanges: dict[str, RequestExchange],
) -> None:
    a, b = exchanges["host-a"], exchanges["host-b"]
    now = round(time.time(), 3)
    journal(a.journal_dir, "collector-0.requests", [(now - 2, b"\x01" * 16), (now - 1, b"\x02" * 16)])
    journal(a.journal_dir, "collector-1.requests", [(now, b"\x03" * 16)])
    journal(b.journal_dir, "collector-0.requests", [(now, b"\x04" * 16)])

    assert a.run_once() == (3, 0)  # b has published nothing yet
    assert b.run_once() == (1, 3)
    assert sorted(fleet(b)) == [(now - 2, b"\x01" * 16), (now - 1, b"\x02" * 16), (now, b"\x03" * 16)]
    assert a.run_once() == (0, 1)
    assert fleet(a) == [(now, b"\x04" * 16)]  # never its own


def test_a_fetch_overlapping_the_last_one_journals_nothing_twice_and_new_lines_are_published_once(
    exchanges: dict[str, RequestExchange],
) -> None:
    a, b = exchanges["host-a"], exchanges["host-b"]
    now = round(time.time(), 3)
    journal(a.journal_dir, "collector-0.requests", [(now, b"\x01" * 16)])
    assert a.run_once() == (1, 0)
    assert b.run_once() == (0, 1)
    assert b.run_once() == (0, 0)  # the same rows again, inside the overlap
    journal(a.journal_dir, "collector-0.requests", [(now + 1, b"\x02" * 16)])
    assert a.run_once() == (1, 0)
    assert b.run_once() == (0, 1)
    assert fleet(b) == [(now, b"\x01" * 16), (now + 1, b"\x02" * 16)]


def test_a_host_started_later_fetches_the_digests_of_the_last_window(
    chdb_client: Client, database: str, exchanges: dict[str, RequestExchange], tmp_path: Path
) -> None:
    a = exchanges["host-a"]
    now = round(time.time(), 3)
    journal(a.journal_dir, "collector-0.requests", [(now, b"\x05" * 16)])
    a.run_once()
    late = RequestExchange(tmp_path / "host-c", lambda: chdb_client, database, "host-c", window_s=WINDOW_S)
    late.start()
    try:
        assert late.run_once() == (0, 1)
        assert fleet(late) == [(now, b"\x05" * 16)]
    finally:
        late.shutdown()


def test_a_collector_on_the_other_host_answers_the_retry_as_a_duplicate(
    exchanges: dict[str, RequestExchange],
) -> None:
    a, b = exchanges["host-a"], exchanges["host-b"]
    # The retried request was stored by a collector on host a...
    stored_on_a = RequestDedup(DedupConfig(), a.journal_dir / "collector-0.requests")
    stored_on_a.start()
    written: list[str] = []

    async def write(host: str) -> None:
        written.append(host)

    assert asyncio.run(stored_on_a.once(b"\x07" * 16, lambda: write("a"))) is False
    stored_on_a.shutdown()
    # ...and reaches a collector on host b once the digest has made the trip.
    on_b = RequestDedup(DedupConfig(), b.journal_dir / "collector-0.requests")
    on_b.start()
    assert asyncio.run(on_b.once(b"\x08" * 16, lambda: write("b"))) is False  # another request: written
    a.run_once()
    b.run_once()
    assert asyncio.run(on_b.once(b"\x07" * 16, lambda: write("b"))) is True
    on_b.shutdown()
    assert (written, on_b.deduplicated) == (["a", "b"], 1)
    assert (b.journal_dir / FLEET_JOURNAL).exists()


def test_digests_older_than_the_window_are_not_journaled_and_the_fleet_journal_is_compacted_to_it(
    chdb_client: Client,
    database: str,
    exchanges: dict[str, RequestExchange],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("vigil.collector.request_exchange._COMPACT_MIN_LINES", 4)
    a = exchanges["host-a"]
    start = round(time.time(), 3)
    clock = [start]
    short = RequestExchange(
        tmp_path / "host-d", lambda: chdb_client, database, "host-d", window_s=60, clock=lambda: clock[0]
    )
    short.start()
    try:
        journal(a.journal_dir, "collector-0.requests", [(start - 61, b"\x0f" * 16)])
        a.run_once()
        assert short.run_once() == (0, 0)  # stored 61 s ago: no collector would take it for a retry

        first = [(start + i, bytes([i]) * 16) for i in range(6)]
        journal(a.journal_dir, "collector-0.requests", first)
        a.run_once()
        assert short.run_once() == (0, 6)
        clock[0] = start + 100  # the first six are past the window now
        later = [(start + 100, b"\xaa" * 16), (start + 100, b"\xbb" * 16)]
        journal(a.journal_dir, "collector-0.requests", later)
        a.run_once()
        assert short.run_once() == (0, 2)
        assert fleet(short) == later  # 8 lines of which 2 in the window: rewritten with those
    finally:
        short.shutdown()


def test_while_clickhouse_is_away_digests_wait_and_those_past_the_window_are_dropped(
    chdb_client: Client, database: str, exchanges: dict[str, RequestExchange], tmp_path: Path
) -> None:
    b = exchanges["host-b"]
    start = round(time.time(), 3)
    clock = [start]
    away = [True]

    def connect() -> Client:
        if away[0]:
            raise StoreUnavailable("cannot reach ClickHouse at 127.0.0.1:8123: connection refused")
        return chdb_client

    a = RequestExchange(tmp_path / "host-e", connect, database, "host-e", window_s=60, clock=lambda: clock[0])
    a.start()
    try:
        journal(a.journal_dir, "collector-0.requests", [(start, b"\x01" * 16)])
        with pytest.raises(StoreUnavailable):
            a.run_once()
        clock[0] = start + 30
        journal(a.journal_dir, "collector-0.requests", [(start + 30, b"\x02" * 16)])
        with pytest.raises(StoreUnavailable):
            a.run_once()
        clock[0] = start + 70  # the first digest has left the window meanwhile
        away[0] = False
        assert a.run_once() == (1, 0)
        assert b.run_once() == (0, 1)
        assert fleet(b) == [(start + 30, b"\x02" * 16)]
    finally:
        a.shutdown()
