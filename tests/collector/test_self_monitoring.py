"""The collector's own numbers: counting what receivers pass on, and sampling lag and drops into the store."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pytest

from tests.conftest import new_database_name
from vigil.collector.batcher import Batcher, BatcherConfig
from vigil.collector.self_monitoring import CountingSubmitter, SelfSampler, wal_backlog
from vigil.collector.wal import WalCapacity, WriteAheadLog
from vigil.collector.writer import WalWriter
from vigil.errors import Backpressure, StoreUnavailable
from vigil.self_metrics import CollectorSnapshot, PipelineCounts, WalBacklog
from vigil.store.client import Client
from vigil.store.migrate import migrate
from vigil.store.schema import DdlContext
from vigil.store.write import StoreWriter
from vigil.testing import SinkConsumer
from vigil.types import RowBatch

# An hour ago, on a whole minute: within every retention, and whole seconds as the store keeps them.
T = float(int(time.time()) // 60 * 60 - 3600)


def rows(table: str, n: int) -> RowBatch:
    return RowBatch(table, pa.table({"x": list(range(n))}))


def test_the_wal_writer_counts_the_rows_and_bytes_it_appends(tmp_path: Path) -> None:
    counts = PipelineCounts()
    wal = WriteAheadLog(tmp_path / "collector-0", fsync=False)
    writer = WalWriter(wal, WalCapacity(tmp_path, 1024**2), counts=counts)
    writer.start()
    writer.consume(rows("spans", 2))
    writer.consume(rows("logs", 3))
    writer.consume(rows("spans", 1))
    snapshot = counts.snapshot()
    assert snapshot.wal_rows == {"spans": 3, "logs": 3}
    assert snapshot.wal_bytes == sum(segment.size for segment in wal.segments())


def test_the_counting_submitter_counts_refusals_losses_and_accepted_flows() -> None:
    counts = PipelineCounts()
    sink = SinkConsumer()
    batcher = Batcher(sink, BatcherConfig(max_batch_rows=4, max_batch_age=0.001, max_queue_rows=4))
    batcher.start()
    try:
        submitter = CountingSubmitter(batcher, counts, "flows", accepted_table="flows")
        for future in submitter.submit_all([rows("flows", 3), rows("flow_exporters", 1)]):
            future.result(timeout=10)
        with pytest.raises(Backpressure):  # five rows never fit a queue of four
            submitter.submit_all([rows("flows", 5)])
        sink.error = StoreUnavailable("the log is full and ClickHouse is down", 5.0)
        [lost] = submitter.submit_all([rows("flows", 2)])
        with pytest.raises(StoreUnavailable):
            lost.result(timeout=10)
    finally:
        batcher.shutdown()
    snapshot = counts.snapshot()
    assert (snapshot.accepted["flows"], snapshot.dropped["flows"]) == (3, 2)
    assert snapshot.refused["flows"] == {"backpressure": 5, "unavailable": 0, "error": 0}


def test_the_backlog_is_what_the_logs_hold_and_its_oldest_segment_is_the_ingest_lag(tmp_path: Path) -> None:
    assert wal_backlog(tmp_path, 4096) == WalBacklog(segments=0, bytes=0, oldest=None, limit_bytes=4096)
    segments = []
    for name, written in (("collector-0", T - 30), ("collector-1", T - 95)):
        wal = WriteAheadLog(tmp_path / name, fsync=False)
        wal.open()
        segment = wal.append(rows("spans", 2))
        os.utime(wal.directory / segment.name, (written, written))
        segments.append(segment)
    backlog = wal_backlog(tmp_path, 4096)
    assert backlog == WalBacklog(segments=2, bytes=sum(s.size for s in segments), oldest=T - 95, limit_bytes=4096)
    assert backlog.lag(T) == 95.0


def snapshot_with(refused: int, rejected: int) -> CollectorSnapshot:
    snapshot = CollectorSnapshot()
    snapshot.refused["logs"]["backpressure"] = refused
    snapshot.rejected["traces"] = rejected
    return snapshot


@pytest.fixture
def database() -> str:
    # The first sample must meet a store without tables: never an emptied, migrated database.
    return new_database_name()


def test_the_sampler_writes_the_ingest_lag_and_what_moved_since_the_previous_sample(
    chdb_client: Client, database: str
) -> None:
    current = {"collector-0": snapshot_with(refused=5, rejected=2), "collector-1": snapshot_with(refused=1, rejected=0)}
    backlog = WalBacklog(segments=1, bytes=100, oldest=T - 95, limit_bytes=4096)
    sampler = SelfSampler(
        StoreWriter(chdb_client, database), lambda: backlog, lambda: current, interval=10, instance="host-a"
    )
    # ClickHouse refuses the first sample (its tables do not exist yet): the counts wait for the next one.
    assert not sampler.write_sample(now=T - 10)
    migrate(chdb_client, DdlContext(database=database))
    assert sampler.write_sample(now=T)
    current = {"collector-0": snapshot_with(refused=9, rejected=2), "collector-1": snapshot_with(refused=1, rejected=0)}
    backlog = WalBacklog(segments=0, bytes=0, oldest=None, limit_bytes=4096)
    assert sampler.write_sample(now=T + 10)

    gauges = chdb_client.query(
        f"""SELECT ServiceName, MetricName, MetricUnit, Attributes, toUnixTimestamp(TimeUnix), Value
            FROM {database}.metrics_gauge ORDER BY TimeUnix"""
    ).result_rows
    assert gauges == [
        ("vigil", "vigil.ingest.lag", "s", {"instance": "host-a"}, int(T), 95.0),
        ("vigil", "vigil.ingest.lag", "s", {"instance": "host-a"}, int(T + 10), 0.0),
    ]
    sums = chdb_client.query(
        f"""SELECT MetricName, Attributes, toUnixTimestamp(StartTimeUnix), toUnixTimestamp(TimeUnix), Value,
                   AggregationTemporality, IsMonotonic
            FROM {database}.metrics_sum ORDER BY TimeUnix, MetricName"""
    ).result_rows
    refused = {"instance": "host-a", "reason": "backpressure", "signal": "logs"}
    assert sums == [
        ("vigil.receiver.refused_items", refused, int(T), int(T), 6.0, 1, True),
        ("vigil.receiver.rejected_items", {"instance": "host-a", "signal": "traces"}, int(T), int(T), 2.0, 1, True),
        ("vigil.receiver.refused_items", refused, int(T), int(T + 10), 4.0, 1, True),
    ]
