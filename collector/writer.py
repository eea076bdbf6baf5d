"""The last collector stages: durable append to the log, then large inserts into ClickHouse.

`WalWriter` is the batcher's consumer in each collector: it appends each merged batch to
that collector's write-ahead log, so a request is acknowledged as soon as its rows are on
disk. The `Inserter`, in the process that owns the store, finds segments in every
collector's log, gathers them into inserts of up to `insert_rows` rows at least every
`insert_interval` seconds, retries while ClickHouse is unavailable (the logs hold the rows
meanwhile), and deletes segments once ClickHouse has them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from vigil.collector.wal import LOG_PREFIX, STORE_UNAVAILABLE_FLAG, Segment, WalCapacity, WriteAheadLog
from vigil.errors import PermanentError, StoreUnavailable
from vigil.self_metrics import InserterMetrics, PipelineCounts
from vigil.store.write import StoreWriter
from vigil.types import RowBatch

__all__ = ["Inserter", "InserterConfig", "WalWriter"]

logger = logging.getLogger(__name__)

_DEFAULT_INSERT_ROWS = 200_000
_DEFAULT_INSERT_INTERVAL_S = 1.0
_DEFAULT_SCAN_INTERVAL_S = 0.05
_RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
_LOOP_FAILURE_PAUSE_S = 1.0


@dataclass(frozen=True, slots=True)
class InserterConfig:
    insert_rows: int = _DEFAULT_INSERT_ROWS
    insert_interval: float = _DEFAULT_INSERT_INTERVAL_S
    # How often logs written by other processes are scanned for new segments.
    scan_interval: float = _DEFAULT_SCAN_INTERVAL_S


class Inserter:
    """Moves segments from the write-ahead logs under `root` into ClickHouse, oldest first.

    Each subdirectory of `root` is one collector's log. New segments are found by scanning
    (collectors may be other processes), at least every `scan_interval` seconds.
    """

    def __init__(
        self,
        writer: StoreWriter,
        root: Path,
        config: InserterConfig | None = None,
        *,
        fsync: bool = True,
        clock: Callable[[], float] = time.monotonic,
        metrics: InserterMetrics | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.writer = writer
        self.root = Path(root)
        # Vigil's /metrics and its own traces (a span per insert); private, unexported ones by default.
        self.metrics = metrics or InserterMetrics()
        self.tracer = tracer or trace.NoOpTracer()
        self.config = config or InserterConfig()
        self.fsync = fsync
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._logs: dict[str, WriteAheadLog] = {}
        self._seen: dict[str, int] = {}
        # Per log, segments already queued for replay in their recorded groups.
        self._replaying: dict[str, set[int]] = {}
        self._queues: dict[tuple[str, str], deque[tuple[float, Segment]]] = {}
        self._replay: list[tuple[str, str | None, list[Segment]]] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._failing_since: float | None = None
        # Drain requests are numbered; one is done when a scan that began after it found nothing
        # left, so a segment appended just before the request is never missed.
        self._drain_requested = 0
        self._drained = 0
        self._attempt = 0  # consecutive failed inserts, for the backoff
        self._idle = threading.Condition(self._lock)
        self._inserted_rows = 0

    def start(self) -> None:
        """Recover what an earlier run left in the logs, then start inserting."""
        with self._lock:
            if self._thread is not None:
                return
        self.root.mkdir(parents=True, exist_ok=True)
        self._set_failing(False)
        replayed = 0
        for directory in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name.startswith(LOG_PREFIX)):
            log = self._log(directory.name)
            log.discard_unacknowledged()
            segments = log.segments()
            groups = log.pending_groups(segments)
            grouped = {s.seq for _, group in groups for s in group}
            with self._lock:
                self._replay.extend((directory.name, token, group) for token, group in groups)
            replayed += sum(s.rows for _, group in groups for s in group)
            replayed += sum(s.rows for s in segments if s.seq not in grouped)
            # Segments outside groups are found by the first scan, like new ones.
            self._replaying[directory.name] = grouped
        if replayed:
            logger.info("replaying %d rows left in the write-ahead log by an earlier run", replayed)
        with self._lock:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="vigil-inserter", daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        """Insert everything in the logs (rows stay there if ClickHouse is down), then stop."""
        with self._lock:
            thread = self._thread
            self._stopping = True
            self._drain_requested += 1
            self._wake.notify_all()
        if thread is not None:
            thread.join()
        with self._lock:
            self._thread = None
            self._idle.notify_all()

    def notify(self) -> None:
        """A collector in this process appended a segment: scan now rather than at the next tick."""
        with self._lock:
            self._wake.notify()

    def wait_idle(self, timeout: float) -> bool:
        """Insert everything in the logs now and wait until it is in ClickHouse (drains and tests)."""
        with self._lock:
            self._drain_requested += 1
            request = self._drain_requested
            self._wake.notify_all()
            return self._idle.wait_for(lambda: self._drained >= request or self._thread is None, timeout)

    @property
    def failing(self) -> bool:
        """The last insert attempt failed and has not succeeded since."""
        with self._lock:
            return self._failing_since is not None

    @property
    def inserted_rows(self) -> int:
        with self._lock:
            return self._inserted_rows

    def _log(self, name: str) -> WriteAheadLog:
        if name not in self._logs:
            self._logs[name] = WriteAheadLog(self.root / name, fsync=self.fsync)
            self._seen.setdefault(name, -1)
        return self._logs[name]

    def _scan(self) -> None:
        """Queue segments that appeared since the last scan (called without the lock held)."""
        names = [p.name for p in self.root.iterdir() if p.is_dir() and p.name.startswith(LOG_PREFIX)]
        now = self._clock()
        for name in names:
            log = self._log(name)
            fresh = log.segments(after=self._seen[name])
            if not fresh:
                continue
            self._seen[name] = fresh[-1].seq
            replaying = self._replaying.pop(name, set())
            fresh = [segment for segment in fresh if segment.seq not in replaying]
            with self._lock:
                for segment in fresh:
                    self._queues.setdefault((name, segment.table), deque()).append((now, segment))

    def _set_failing(self, failing: bool) -> None:
        flag = self.root / STORE_UNAVAILABLE_FLAG
        with self._lock:
            if failing and self._failing_since is None:
                self._failing_since = self._clock()
            elif not failing:
                self._failing_since = None
        self.metrics.store_unavailable.set(1 if failing else 0)
        if failing:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    def _take_locked(self, now: float, drain: bool) -> tuple[str, str | None, list[Segment]] | None:
        if self._replay:
            return self._replay.pop(0)
        for (name, _table), queue in self._queues.items():
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
                return name, None, group
        return None

    def _next_wait_locked(self) -> float:
        oldest = [queue[0][0] for queue in self._queues.values() if queue]
        scan = self.config.scan_interval
        if not oldest:
            return scan
        return max(min(min(oldest) + self.config.insert_interval - self._clock(), scan), 0.0)

    def _run(self) -> None:
        while True:
            try:
                if self._step():
                    return
            except Exception:
                # Never die silently: a dead inserter would let the logs fill while every
                # request is still acknowledged. Say so, count it, pause, and carry on.
                self.metrics.failed("error")
                logger.exception("the inserter failed; retrying in %.0f s", _LOOP_FAILURE_PAUSE_S)
                with self._lock:
                    self._wake.wait_for(lambda: self._stopping, timeout=_LOOP_FAILURE_PAUSE_S)
                    if self._stopping:
                        self._drained = self._drain_requested
                        self._idle.notify_all()
                        return

    def _step(self) -> bool:
        """Scan, then insert one group or wait; True once stopped and drained."""
        with self._lock:
            requested_before_scan = self._drain_requested
        self._scan()
        with self._lock:
            drain = self._stopping or self._drain_requested > self._drained
            taken = self._take_locked(self._clock(), drain=drain)
            if taken is None:
                if drain:
                    # Everything the scan found is in ClickHouse, and the scan began after every
                    # request up to `requested_before_scan`.
                    self._drained = requested_before_scan
                    self._idle.notify_all()
                    if self._stopping and self._drained >= self._drain_requested:
                        return True
                if self._drained >= self._drain_requested:  # else a request came during the scan
                    self._wake.wait(self._next_wait_locked())
                return False
        name, token, group = taken
        log = self._logs[name]
        if token is None:
            # Recorded before the attempt, so every retry, even after a restart, uses this token.
            try:
                token = log.begin_insert(group)
            except Exception:
                with self._lock:
                    # Back in front: the rows are still in the log; the loop pauses and tries again.
                    self._replay.insert(0, (name, None, group))
                raise
        try:
            self._insert(log, group, token)
        except (PermanentError, ValueError, pa.ArrowInvalid, OSError) as exc:
            # These rows can never be inserted as they are; retrying would block every later
            # segment. Keep them aside for inspection and go on.
            log.quarantine([s.name for s in group], f"cannot be inserted: {exc!r}")
            log.commit_insert(group)  # the segments are in quarantine; this removes the manifest
            self.metrics.failed("quarantined")
        except StoreUnavailable:
            self.metrics.failed("unavailable")
            self._set_failing(True)
            with self._lock:
                # Back in front, in order: the log keeps the rows; try again after a pause.
                self._replay.insert(0, (name, token, group))
                if self._stopping:
                    logger.warning("ClickHouse unavailable at shutdown; its rows stay in the write-ahead log")
                    self._drained = self._drain_requested
                    self._idle.notify_all()
                    return True
                delay = _RETRY_BACKOFF_S[min(self._attempt, len(_RETRY_BACKOFF_S) - 1)]
                self._attempt += 1
                self._wake.wait_for(lambda: self._stopping, timeout=delay)
        else:
            if self._attempt:
                self._set_failing(False)
            self._attempt = 0
        return False

    def _insert(self, log: WriteAheadLog, group: list[Segment], token: str) -> None:
        rows = sum(s.rows for s in group)
        table = group[0].table
        attributes: dict[str, AttributeValue] = {
            "db.system.name": "clickhouse",
            "db.operation.name": "INSERT",
            "db.collection.name": table,
            "vigil.rows": rows,
            "vigil.segments": len(group),
            "vigil.log": log.directory.name,
        }
        started = time.perf_counter()
        with self.tracer.start_as_current_span(f"INSERT {table}", kind=trace.SpanKind.CLIENT, attributes=attributes):
            self.writer.insert_files(table, log.directory, [s.name for s in group], rows=rows, dedup_token=token)
        self.metrics.inserted(table, rows, time.perf_counter() - started)
        log.commit_insert(group)
        with self._lock:
            self._inserted_rows += rows


class WalWriter:
    """The batcher's consumer: append to this collector's log, durably, before acknowledging.

    `on_append` tells an inserter in the same process to look now instead of at its next scan;
    `counts` (the collector's, for Vigil's /metrics) receives the rows and bytes appended.
    """

    def __init__(
        self,
        wal: WriteAheadLog,
        capacity: WalCapacity,
        on_append: Callable[[], None] | None = None,
        counts: PipelineCounts | None = None,
    ) -> None:
        self.wal = wal
        self.capacity = capacity
        self.on_append = on_append
        self.counts = counts

    def consume(self, batch: RowBatch) -> None:
        self.capacity.check()
        segment = self.wal.append(batch)
        if self.counts is not None:
            self.counts.appended(batch.table, segment.rows, segment.size)
        if self.on_append is not None:
            self.on_append()

    def start(self) -> None:
        self.wal.open()

    def shutdown(self) -> None:
        pass
