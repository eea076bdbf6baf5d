from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

from vigil.collector.batcher import Batcher, BatcherConfig
from vigil.errors import Backpressure, ConfigError, StoreUnavailable
from vigil.testing import SinkConsumer
from vigil.types import RowBatch


def rows(*values: int) -> RowBatch:
    return RowBatch("spans", pa.table({"x": pa.array(values, pa.int64())}))


class GatedConsumer(SinkConsumer):
    """Blocks every write until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def consume(self, batch: RowBatch) -> None:
        self.entered.set()
        assert self.gate.wait(10)
        super().consume(batch)


def test_rows_are_written_once_a_batch_is_full_without_waiting_for_its_age() -> None:
    sink = SinkConsumer()
    batcher = Batcher(sink, BatcherConfig(max_batch_rows=3, max_batch_age=60, max_queue_rows=10))
    batcher.start()
    try:
        first = batcher.submit(rows(1, 2))
        second = batcher.submit(rows(3))
        second.result(timeout=5)
        assert first.done()
        assert [b.rows.column("x").to_pylist() for b in sink.batches] == [[1, 2, 3]]
    finally:
        batcher.shutdown()


def test_a_lone_row_is_written_once_it_reaches_the_maximum_age() -> None:
    sink = SinkConsumer()
    batcher = Batcher(sink, BatcherConfig(max_batch_rows=100, max_batch_age=0.05, max_queue_rows=100))
    batcher.start()
    try:
        started = time.monotonic()
        batcher.submit(rows(7)).result(timeout=5)
        assert time.monotonic() - started >= 0.05
        assert sink.table("spans").column("x").to_pylist() == [7]
    finally:
        batcher.shutdown()


def test_a_full_queue_refuses_new_rows_with_backpressure_and_counts_them() -> None:
    sink = GatedConsumer()
    batcher = Batcher(sink, BatcherConfig(max_batch_rows=2, max_batch_age=0.01, max_queue_rows=4))
    batcher.start()
    try:
        in_flight = batcher.submit(rows(1, 2))
        assert sink.entered.wait(5)
        queued = batcher.submit(rows(3, 4))
        with pytest.raises(Backpressure) as info:
            batcher.submit(rows(5))
        assert str(info.value) == "the write queue is full (4 rows); retry after a second"
        assert info.value.retry_after_s == 1.0
        sink.gate.set()
        in_flight.result(timeout=5)
        queued.result(timeout=5)
        stats = batcher.stats()
        assert (stats.written_rows, stats.refused_rows, stats.queued_rows) == (4, 1, 0)
    finally:
        sink.gate.set()
        batcher.shutdown()


def test_a_store_failure_fails_every_request_in_the_batch_and_nothing_is_acknowledged() -> None:
    sink = SinkConsumer()
    sink.error = StoreUnavailable("ClickHouse is down", 2.0)
    batcher = Batcher(sink, BatcherConfig(max_batch_rows=2, max_batch_age=60, max_queue_rows=10))
    batcher.start()
    try:
        first, second = batcher.submit(rows(1)), batcher.submit(rows(2))
        for future in (first, second):
            with pytest.raises(StoreUnavailable, match="ClickHouse is down"):
                future.result(timeout=5)
        stats = batcher.stats()
        assert (stats.written_rows, stats.failed_rows, stats.queued_rows) == (0, 2, 0)
    finally:
        batcher.shutdown()


def test_shutdown_writes_every_queued_row_before_returning() -> None:
    sink = SinkConsumer()
    batcher = Batcher(sink, BatcherConfig(max_batch_rows=100, max_batch_age=60, max_queue_rows=100))
    batcher.start()
    pending = batcher.submit(rows(1, 2, 3))
    batcher.shutdown()
    assert pending.done() and pending.exception() is None
    assert sink.rows("spans") == 3


def test_shutdown_is_idempotent_and_safe_before_start() -> None:
    batcher = Batcher(SinkConsumer())
    batcher.shutdown()
    batcher.shutdown()


def test_rows_offered_after_shutdown_are_refused_as_retryable() -> None:
    batcher = Batcher(SinkConsumer())
    batcher.start()
    batcher.shutdown()
    with pytest.raises(Backpressure, match="shutting down"):
        batcher.submit(rows(1))


def test_an_empty_batch_is_acknowledged_without_a_write() -> None:
    sink = SinkConsumer()
    batcher = Batcher(sink)
    assert batcher.submit(RowBatch("spans", pa.table({"x": pa.array([], pa.int64())}))).result(timeout=1) is None
    assert sink.batches == []


def test_config_validation_names_the_keys() -> None:
    with pytest.raises(ConfigError) as info:
        Batcher(SinkConsumer(), BatcherConfig(max_batch_rows=10, max_batch_age=1, max_queue_rows=5))
    assert str(info.value) == (
        "max_queue_rows (5) must be at least max_batch_rows (10) so that one full batch fits in the queue"
    )
