"""The last collector stages: durable append to the log, then large inserts into ClickHouse.

`WalWriter` is the batcher's consumer: it appends each merged batch to the write-ahead log
and hands the segment to the `Inserter`, so a request is acknowledged as soon as its rows
are on disk. The `Inserter` gathers segments into inserts of up to `insert_rows` rows, at
least every `insert_interval` seconds, retries while ClickHouse is unavailable (the log
holds the rows meanwhile), and deletes segments once ClickHouse has them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry import metrics

from vigil.collector.wal import Segment, WriteAheadLog
from vigil.errors import Backpressure, StoreUnavailable
from vigil.store.write import StoreWriter
from vigil.types import RowBatch

__all__ = ["Inserter", "InserterConfig", "WalWriter"]

logger = logging.getLogger(__name__)

_DEFAULT_INSERT_ROWS = 200_000
_DEFAULT_INSERT_INTERVAL_S = 1.0
_DEFAULT_MAX_WAL_BYTES = 2 * 1024**3
_RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class InserterConfig:
    insert_rows: int = _DEFAULT_INSERT_ROWS
    insert_interval: float = _DEFAULT_INSERT_INTERVAL_S
    max_wal_bytes: int = _DEFAULT_MAX_WAL_BYTES


class Inserter:
    """Moves segments from the write-ahead log into ClickHouse, oldest first, in large inserts."""

    def __init__(
        self,
        writer: StoreWriter,
        wal: WriteAheadLog,
        config: InserterConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = writer
        self.wal = wal
        self.config = config or InserterConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queues: dict[str, deque[tuple[float, Segment]]] = {}
        self._replay: list[tuple[str | None, list[Segment]]] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._failing_since: float | None = None
        self._drain_requested = False
        self._inserted_rows = 0
        self._idle = threading.Event()
        self._idle.set()
        meter = metrics.get_meter("vigil.collector.inserter")
        self._inserted = meter.create_counter("vigil.inserter.rows_inserted", unit="{row}")
        meter.create_observable_gauge(
            "vigil.wal.bytes",
            callbacks=[lambda _options: [metrics.Observation(self.wal.size_bytes)]],
            unit="By",
        )

    def start(self) -> None:
        """Open the log, queue what an earlier run left in it, and start inserting."""
        with self._lock:
            if self._thread is not None:
                return
        leftovers = self.wal.open()
        groups = self.wal.pending_groups(leftovers)
        in_groups = {s.seq for _, group in groups for s in group}
        remaining = [s for s in self.wal.open() if s.seq not in in_groups] if groups else leftovers
        with self._lock:
            self._replay = [(token, group) for token, group in groups]
            for segment in remaining:
                self._queues.setdefault(segment.table, deque()).append((self._clock(), segment))
            if groups or remaining:
                self._idle.clear()
                logger.info(
                    "replaying %d rows left in the write-ahead log by an earlier run",
                    sum(s.rows for _, g in groups for s in g) + sum(s.rows for s in remaining),
                )
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="vigil-inserter", daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        """Insert everything queued (rows stay in the log if ClickHouse is down), then stop."""
        with self._lock:
            thread = self._thread
            self._stopping = True
            self._wake.notify_all()
        if thread is not None:
            thread.join()
        with self._lock:
            self._thread = None

    def enqueue(self, segment: Segment) -> None:
        with self._lock:
            self._queues.setdefault(segment.table, deque()).append((self._clock(), segment))
            self._idle.clear()
            # Always wake the inserter: it may be asleep without a deadline, or the batch may now be full.
            self._wake.notify()

    def check_capacity(self) -> None:
        """Raise when the log is full: `StoreUnavailable` while inserts fail, else `Backpressure`."""
        if self.wal.size_bytes < self.config.max_wal_bytes:
            return
        if self._failing_since is not None:
            raise StoreUnavailable(
                "ClickHouse has been unavailable and the write-ahead log is full "
                f"({self.config.max_wal_bytes} bytes); retry later",
                5.0,
            )
        raise Backpressure(
            f"the write-ahead log is full ({self.config.max_wal_bytes} bytes) while inserts catch up; retry shortly",
            1.0,
        )

    def wait_idle(self, timeout: float) -> bool:
        """Insert everything queued now and wait until it is in ClickHouse (drains and tests)."""
        with self._lock:
            if not self._idle.is_set():
                self._drain_requested = True
                self._wake.notify_all()
        return self._idle.wait(timeout)

    @property
    def failing(self) -> bool:
        """The last insert attempt failed and has not succeeded since."""
        with self._lock:
            return self._failing_since is not None

    @property
    def inserted_rows(self) -> int:
        with self._lock:
            return self._inserted_rows

    def _take_locked(self, now: float, drain: bool) -> tuple[str | None, list[Segment]] | None:
        if self._replay:
            return self._replay.pop(0)
        for queue in self._queues.values():
            if not queue:
                continue
            rows = sum(s.rows for _, s in queue)
            if drain or rows >= self.config.insert_rows or now - queue[0][0] >= self.config.insert_interval:
                group: list[Segment] = []
                taken = 0
                while queue and (not group or taken + queue[0][1].rows <= self.config.insert_rows):
                    _, segment = queue.popleft()
                    group.append(segment)
                    taken += segment.rows
                return None, group
        return None

    def _next_deadline_locked(self) -> float | None:
        oldest = [queue[0][0] for queue in self._queues.values() if queue]
        return min(oldest) + self.config.insert_interval if oldest else None

    def _run(self) -> None:
        attempt = 0
        while True:
            with self._lock:
                while True:
                    taken = self._take_locked(self._clock(), drain=self._stopping or self._drain_requested)
                    if taken is not None:
                        token, group = taken
                        break
                    if not any(self._queues.values()):
                        self._drain_requested = False
                        self._idle.set()
                        if self._stopping:
                            return
                    deadline = self._next_deadline_locked()
                    timeout = None if deadline is None else max(deadline - self._clock(), 0.0)
                    self._wake.wait(timeout)
            if token is None:
                # Recorded before the attempt, so every retry, even after a restart, uses this token.
                token = self.wal.begin_insert(group)
            try:
                self._insert(group, token)
            except StoreUnavailable:
                with self._lock:
                    if self._failing_since is None:
                        self._failing_since = self._clock()
                    # Back in front, in order: the log keeps the rows; try again after a pause.
                    self._replay.insert(0, (token, group))
                    if self._stopping:
                        logger.warning("ClickHouse unavailable at shutdown; its rows stay in the write-ahead log")
                        self._replay.clear()
                        self._queues.clear()
                        self._idle.set()
                        return
                    delay = _RETRY_BACKOFF_S[min(attempt, len(_RETRY_BACKOFF_S) - 1)]
                    attempt += 1
                    self._wake.wait_for(lambda: self._stopping, timeout=delay)
            else:
                attempt = 0
                with self._lock:
                    self._failing_since = None

    def _insert(self, group: list[Segment], token: str) -> None:
        rows = self.writer.insert_files(
            group[0].table, self.wal.directory, [segment.name for segment in group], dedup_token=token
        )
        self.wal.commit_insert(group)
        with self._lock:
            self._inserted_rows += rows
        self._inserted.add(rows, {"table": group[0].table})


class WalWriter:
    """The batcher's consumer: append to the log (durable), then queue for insert."""

    def __init__(self, wal: WriteAheadLog, inserter: Inserter) -> None:
        self.wal = wal
        self.inserter = inserter

    def consume(self, batch: RowBatch) -> None:
        self.inserter.check_capacity()
        segment = self.wal.append(batch)
        self.inserter.enqueue(segment)

    def start(self) -> None:
        self.inserter.start()

    def shutdown(self) -> None:
        self.inserter.shutdown()
