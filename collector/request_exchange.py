"""Recognising a retry that a load balancer sent to another host: request digests shared through ClickHouse.

`RequestDedup` recognises a retried OTLP request when it reaches any collector process of the
same Vigil: they read each other's journals. Behind a load balancer the retry may reach another
host, whose collectors have never seen the first attempt. So each Vigil with collectors on a
ClickHouse server runs a `RequestExchange`, which every `interval` seconds:

* **publishes** what its collectors journaled since the last round (request and part digests,
  with the time each was stored) into the ``request_digests`` table, tagged with this Vigil's
  host id;
* **fetches** what other hosts published since its last fetch and appends it to a journal of
  its own in the same directory (``fleet.requests``), which its collector processes read as they
  read a sibling's: a retry of a request stored elsewhere is answered as a duplicate.

A digest is journaled, so published, only once its rows are durable in that host's write-ahead
log: a retry is never wrongly taken for a repeat of data that could still be lost. What the
exchange cannot cover is a retry that reaches another host before the digest has made the trip
(one to two intervals plus the insert); it is stored twice, as with no exchange at all. An OTLP
exporter retries after its timeout (10 s by default), so in practice the first attempt has been
shared by then.

Fetches read by insertion time (ClickHouse's clock, not the hosts') with an overlap, because an
insert may become visible a little after rows inserted later; digests fetched in the overlap are
not appended twice. The table keeps an hour (`TTL`); dedup windows are minutes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from clickhouse_connect.driver.client import Client

from vigil.collector.request_dedup import JOURNAL_SUFFIX, JournalTail, journal_line, read_journal, rewrite_journal

__all__ = ["FLEET_JOURNAL", "RequestExchange"]

logger = logging.getLogger(__name__)

FLEET_JOURNAL = f"fleet{JOURNAL_SUFFIX}"
_TABLE = "request_digests"
# How far back each fetch looks again for inserts that became visible late.
_FETCH_OVERLAP_S = 10.0
# Fetched digests remembered to skip them in the next overlap: a minute of a busy fleet's requests.
_RECENT_LIMIT = 200_000
# The fleet journal is compacted once it holds twice what is in the window, and at least this many lines.
_COMPACT_MIN_LINES = 10_000
# Publishes larger than this go in several inserts, so one round's memory stays bounded.
_PUBLISH_ROWS = 50_000


class RequestExchange:
    """Publishes this Vigil's request digests to ClickHouse and journals other hosts' (see the module)."""

    def __init__(
        self,
        journal_dir: Path,
        connect: Callable[[], Client],
        database: str,
        host: str,
        *,
        window_s: float,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.journal_dir = journal_dir
        self.fleet_journal = journal_dir / FLEET_JOURNAL
        self._connect = connect
        self._client: Client | None = None
        self.database = database
        self.host = host
        self.window_s = window_s
        self.interval_s = interval_s
        self._clock = clock  # wall time, as the journals' stamps
        self._tails: dict[Path, JournalTail] = {}
        self._unpublished: list[tuple[float, bytes]] = []
        self._fetched_until_ms: int | None = None  # the newest InsertedAt seen (ClickHouse's clock)
        self._recent: OrderedDict[bytes, None] = OrderedDict()
        self._fd: int | None = None
        self._journaled: deque[tuple[float, bytes]] = deque()  # the fleet journal's lines still in the window
        self._journal_lines = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self.published = 0  # digests sent to ClickHouse (tests and logs)
        self.fetched = 0  # other hosts' digests journaled here

    def start(self) -> None:
        """Create the fleet journal (before collectors start, so they find it) and begin the rounds."""
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        # A new file each start: digests from before are in it only if still in the window, and
        # the first fetch brings those back.
        self.fleet_journal.unlink(missing_ok=True)
        self._fd = os.open(self.fleet_journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._thread = threading.Thread(target=self._run, name="request-exchange", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """A last round (the collectors' final digests), then stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if not self._failing:  # a ClickHouse that is away would only hold the stop up
            with contextlib.suppress(Exception):
                self.run_once()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception as exc:  # ClickHouse unreachable or refusing: the next round tries again
                if not self._failing:
                    logger.warning("cannot share request digests with other hosts (will retry): %s", exc)
                self._failing = True
                self._client = None
            else:
                if self._failing:
                    logger.info("sharing request digests with other hosts again")
                self._failing = False

    def run_once(self) -> tuple[int, int]:
        """One round: (digests published, digests fetched and journaled)."""
        self._collect_local()
        client = self._client or self._connect()
        self._client = client
        published = self._publish(client)
        fetched = self._fetch(client)
        return published, fetched

    def _collect_local(self) -> None:
        for path in self.journal_dir.glob(f"*{JOURNAL_SUFFIX}"):
            if path != self.fleet_journal:
                self._tails.setdefault(path, JournalTail())
        for path, tail in self._tails.items():
            self._unpublished += read_journal(path, tail)
        # While ClickHouse is away the backlog grows; what has left the window no one needs.
        cutoff = self._clock() - self.window_s
        if self._unpublished and self._unpublished[0][0] <= cutoff:
            self._unpublished = [entry for entry in self._unpublished if entry[0] > cutoff]

    def _publish(self, client: Client) -> int:
        published = 0
        while self._unpublished:
            chunk = self._unpublished[:_PUBLISH_ROWS]
            client.insert(
                f"{self.database}.{_TABLE}",
                [[digest, self.host, datetime.fromtimestamp(stamp, UTC)] for stamp, digest in chunk],
                column_names=["Digest", "Host", "StoredAt"],
            )
            del self._unpublished[: len(chunk)]
            published += len(chunk)
        self.published += published
        return published

    def _fetch(self, client: Client) -> int:
        if self._fetched_until_ms is None:
            since = "now64(3) - toIntervalMillisecond({window_ms:UInt64})"
            parameters: dict[str, object] = {"window_ms": int(self.window_s * 1000)}
        else:
            since = "fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC') - toIntervalMillisecond({overlap_ms:UInt64})"
            parameters = {"since_ms": self._fetched_until_ms, "overlap_ms": int(_FETCH_OVERLAP_S * 1000)}
        rows = client.query(
            "SELECT Digest, toUnixTimestamp64Milli(StoredAt), toUnixTimestamp64Milli(InsertedAt) "
            f"FROM {self.database}.{_TABLE} WHERE InsertedAt >= {since} AND Host != {{host:String}} "
            "ORDER BY InsertedAt",
            parameters={**parameters, "host": self.host},
        ).result_rows
        now = self._clock()
        fresh: list[tuple[float, bytes]] = []
        for digest, stored_ms, inserted_ms in rows:
            key = bytes(digest)
            self._fetched_until_ms = max(self._fetched_until_ms or inserted_ms, inserted_ms)
            if key in self._recent or stored_ms / 1000 <= now - self.window_s:
                continue  # journaled already, or too old to matter to any collector
            self._recent[key] = None
            fresh.append((stored_ms / 1000, key))
        while len(self._recent) > _RECENT_LIMIT:
            self._recent.popitem(last=False)
        if fresh:
            self._append(fresh, now)
        self.fetched += len(fresh)
        return len(fresh)

    def _append(self, entries: list[tuple[float, bytes]], now: float) -> None:
        assert self._fd is not None
        os.write(self._fd, b"".join(journal_line(stamp, digest) for stamp, digest in entries))
        self._journaled.extend(entries)
        self._journal_lines += len(entries)
        while self._journaled and self._journaled[0][0] <= now - self.window_s:
            self._journaled.popleft()
        if self._journal_lines >= 2 * max(len(self._journaled), _COMPACT_MIN_LINES):
            # Rewritten with what is still in the window.
            os.close(self._fd)
            self._fd = rewrite_journal(self.fleet_journal, self._journaled)
            self._journal_lines = len(self._journaled)
