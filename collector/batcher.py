"""A bounded batcher: many small requests in, few large inserts out, each request acknowledged after its write.

Shaped like OpenTelemetry's batch processor (flush on size *or* age) but with the opposite
drop policy: when the queue is full it refuses new rows with `Backpressure`, so the
receiver answers "retry later" and nothing that was acknowledged is ever dropped.

A single flusher thread writes one table's pending rows at a time. While a write is in
progress new rows accumulate, so under load batches grow by themselves (group commit) and
under light load a row waits at most `max_batch_age` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import pyarrow as pa

from vigil.collector._component import RowsConsumer
from vigil.errors import Backpressure, ConfigError, VigilError
from vigil.types import RowBatch

__all__ = ["Batcher", "BatcherConfig", "BatcherStats"]

logger = logging.getLogger(__name__)

_DEFAULT_MAX_BATCH_ROWS = 20_000
_DEFAULT_MAX_BATCH_AGE_S = 0.01
_DEFAULT_MAX_QUEUE_ROWS = 400_000


@dataclass(frozen=True, slots=True)
class BatcherConfig:
    max_batch_rows: int = _DEFAULT_MAX_BATCH_ROWS
    max_batch_age: float = _DEFAULT_MAX_BATCH_AGE_S
    max_queue_rows: int = _DEFAULT_MAX_QUEUE_ROWS

    def validate(self) -> None:
        if self.max_batch_rows < 1:
            raise ConfigError(f"max_batch_rows must be at least 1, got {self.max_batch_rows}")
        if self.max_batch_age <= 0:
            raise ConfigError(f"max_batch_age must be a positive duration, got {self.max_batch_age}")
        if self.max_queue_rows < self.max_batch_rows:
            raise ConfigError(
                f"max_queue_rows ({self.max_queue_rows}) must be at least max_batch_rows "
                f"({self.max_batch_rows}) so that one full batch fits in the queue"
            )


@dataclass(slots=True)
class BatcherStats:
    """Running counts; the collector's snapshot reads `queued_rows` for Vigil's /metrics."""

    queued_rows: int = 0
    written_rows: int = 0
    refused_rows: int = 0
    failed_rows: int = 0
    inserts: int = 0


@dataclass(slots=True)
class _Pending:
    batches: list[RowBatch] = field(default_factory=list)
    futures: list[Future[None]] = field(default_factory=list)
    rows: int = 0
    oldest: float = 0.0


class Batcher:
    """Queues `RowBatch`es per table and hands merged batches to `next_consumer`.

    >>> from vigil.testing import SinkConsumer
    >>> sink = SinkConsumer()
    >>> batcher = Batcher(sink, BatcherConfig(max_batch_rows=10, max_batch_age=0.01, max_queue_rows=10))
    >>> batcher.start()
    >>> batcher.consume(RowBatch("spans", pa.table({"x": [1, 2]})))
    >>> batcher.shutdown()
    >>> sink.rows("spans")
    2
    """

    def __init__(
        self,
        next_consumer: RowsConsumer,
        config: BatcherConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.next_consumer = next_consumer
        self.config = config or BatcherConfig()
        self.config.validate()
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: dict[str, _Pending] = {}
        self._in_flight_rows = 0
        self._stats = BatcherStats()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="vigil-batcher", daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        """Stop taking rows, write everything queued, and stop the flusher."""
        with self._lock:
            thread = self._thread
            self._stopping = True
            self._wake.notify_all()
        if thread is not None:
            thread.join()
        with self._lock:
            self._thread = None
            leftovers = list(self._pending.items())
            self._pending.clear()
        # Only reached when start() never ran: write what was queued so nothing is stranded.
        for table, pending in leftovers:
            self._write(table, pending)

    def stats(self) -> BatcherStats:
        with self._lock:
            stats = BatcherStats(**{name: getattr(self._stats, name) for name in BatcherStats.__slots__})
            stats.queued_rows = self._queued_rows_locked()
            return stats

    def _queued_rows_locked(self) -> int:
        return self._in_flight_rows + sum(p.rows for p in self._pending.values())

    def submit(self, batch: RowBatch) -> Future[None]:
        """Queue `batch`; the future completes when its rows are written, or fails with the reason.

        Raises `Backpressure` at once when the queue cannot take the rows.
        """
        return self.submit_all((batch,))[0]

    def submit_all(self, batches: Sequence[RowBatch]) -> list[Future[None]]:
        """Queue all of `batches` or none of them (one request's rows for several tables).

        A refusal leaves nothing queued, so the client's retry cannot write any row twice.
        """
        futures: list[Future[None]] = [Future() for _ in batches]
        rows = sum(batch.num_rows for batch in batches)
        with self._lock:
            if self._stopping and rows:
                raise Backpressure("the collector is shutting down; retry against another instance", 1.0)
            if rows and self._queued_rows_locked() + rows > self.config.max_queue_rows:
                self._stats.refused_rows += rows
                raise Backpressure(
                    f"the write queue is full ({self.config.max_queue_rows} rows); retry after a second",
                    1.0,
                )
            for batch, future in zip(batches, futures, strict=True):
                if batch.num_rows == 0:
                    future.set_result(None)
                else:
                    self._enqueue_locked(batch, future)
        return futures

    def _enqueue_locked(self, batch: RowBatch, future: Future[None]) -> None:
        pending = self._pending.setdefault(batch.table, _Pending())
        if not pending.batches:
            pending.oldest = self._clock()
        pending.batches.append(batch)
        pending.futures.append(future)
        pending.rows += batch.num_rows
        if pending.rows >= self.config.max_batch_rows:
            self._wake.notify()
        elif len(self._pending) == 1 and len(pending.batches) == 1:
            # The flusher may be asleep without a deadline; give it one.
            self._wake.notify()

    def consume(self, batch: RowBatch) -> None:
        """`RowsConsumer.consume`: queue and wait for the write."""
        self.submit(batch).result()

    def _due_locked(self, now: float) -> tuple[str, _Pending] | None:
        due: tuple[str, _Pending] | None = None
        for table, pending in self._pending.items():
            if not pending.batches:
                continue
            full = pending.rows >= self.config.max_batch_rows
            old = now - pending.oldest >= self.config.max_batch_age
            # The oldest due table first, so one busy table cannot starve another.
            if (full or old or self._stopping) and (due is None or pending.oldest < due[1].oldest):
                due = (table, pending)
        return due

    def _next_deadline_locked(self) -> float | None:
        oldest = [p.oldest for p in self._pending.values() if p.batches]
        return min(oldest) + self.config.max_batch_age if oldest else None

    def _run(self) -> None:
        while True:
            with self._lock:
                while True:
                    due = self._due_locked(self._clock())
                    if due is not None:
                        table, pending = due
                        del self._pending[table]
                        self._in_flight_rows += pending.rows
                        break
                    if self._stopping:
                        return
                    deadline = self._next_deadline_locked()
                    timeout = None if deadline is None else max(deadline - self._clock(), 0.0)
                    self._wake.wait(timeout)
            self._write(table, pending)
            with self._lock:
                self._in_flight_rows -= pending.rows

    def _write(self, table: str, pending: _Pending) -> None:
        rows = pa.concat_tables([b.rows for b in pending.batches]) if len(pending.batches) > 1 else None
        merged = RowBatch(table, rows) if rows is not None else pending.batches[0]
        try:
            self.next_consumer.consume(merged)
        except VigilError as exc:
            self._settle(pending, exc)
        except Exception as exc:  # never let the flusher die: fail these requests and go on
            logger.exception("writing %d rows to %s failed in %s", pending.rows, table, self)
            self._settle(pending, exc)
        else:
            self._settle(pending, None)

    def _settle(self, pending: _Pending, error: BaseException | None) -> None:
        with self._lock:
            if error is None:
                self._stats.written_rows += pending.rows
                self._stats.inserts += 1
            else:
                self._stats.failed_rows += pending.rows
        for future in pending.futures:
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def __repr__(self) -> str:
        return f"Batcher(config={self.config!r})"
