"""A retried OTLP request (same signal, same decompressed body) is stored once."""

from __future__ import annotations

import asyncio
import gzip
import os
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.collector.test_decode_otlp_metrics import T0, gauge, hist_point, histogram, number
from tests.collector.test_decode_otlp_metrics import request as metrics_request
from tests.collector.test_otlp_grpc import METHOD
from tests.collector.test_otlp_http import PROTOBUF, good_and_bad_request, stored_trace_ids
from tests.conftest import RunningVigil, start_vigil, stop_vigil
from vigil.collector.batcher import Batcher, BatcherConfig
from vigil.collector.decode_pool import DecodePool
from vigil.collector.ingest import OtlpIngest
from vigil.collector.request_dedup import DedupConfig, RequestDedup, request_digest
from vigil.errors import ConfigError, StoreUnavailable
from vigil.settings import load_settings
from vigil.store.client import Client
from vigil.testing import SinkConsumer
from vigil.types import DecodeResult, RowBatch


def deduplicated(vigil: RunningVigil) -> int:
    collector = vigil.vigil._collector
    assert collector is not None and collector._dedup is not None
    return collector._dedup.deduplicated


def test_a_body_sent_again_over_http_gzip_and_grpc_is_stored_once_and_answered_alike(
    vigil_server: RunningVigil, chdb_client: Client, database: str
) -> None:
    body, good_ids = good_and_bad_request()  # two good spans, one bad: the answer has partial success
    url = f"{vigil_server.otlp_http}/v1/traces"
    first = httpx.post(url, content=body, headers=PROTOBUF)
    # A recompressed retry differs on the wire (gzip's header holds a time); decompressed, it is the same.
    again = httpx.post(url, content=gzip.compress(body, mtime=1), headers={**PROTOBUF, "Content-Encoding": "gzip"})
    with grpc.insecure_channel(vigil_server.otlp_grpc) as channel:
        export = channel.unary_unary(
            METHOD, request_serializer=lambda b: b, response_deserializer=ExportTraceServiceResponse.FromString
        )
        over_grpc = export(body, timeout=10)
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.content == again.content == over_grpc.SerializeToString()
    assert over_grpc.partial_success.rejected_spans == 1
    assert stored_trace_ids(vigil_server, chdb_client, database) == sorted(good_ids)
    assert deduplicated(vigil_server) == 2


def test_the_same_body_sent_concurrently_is_stored_once(
    vigil_server: RunningVigil, chdb_client: Client, database: str
) -> None:
    body, good_ids = good_and_bad_request()

    async def send_both() -> list[int]:
        async with httpx.AsyncClient() as client:
            responses = await asyncio.gather(
                *(client.post(f"{vigil_server.otlp_http}/v1/traces", content=body, headers=PROTOBUF) for _ in range(2))
            )
        return [r.status_code for r in responses]

    assert asyncio.run(send_both()) == [200, 200]
    assert stored_trace_ids(vigil_server, chdb_client, database) == sorted(good_ids)
    assert deduplicated(vigil_server) == 1


def test_a_different_signal_with_the_same_bytes_is_not_a_repeat(
    vigil_server: RunningVigil, chdb_client: Client, database: str
) -> None:
    empty = b""  # a valid, empty request for every signal
    for signal in ("traces", "logs", "metrics"):
        assert httpx.post(f"{vigil_server.otlp_http}/v1/{signal}", content=empty, headers=PROTOBUF).status_code == 200
    assert deduplicated(vigil_server) == 0


def test_a_retry_after_a_restart_within_the_window_is_still_recognised(
    vigil_settings: dict[str, Any], chdb_client: Client, database: str
) -> None:
    body, good_ids = good_and_bad_request()
    settings = load_settings(**vigil_settings, detectors_enabled=False)
    first, thread = start_vigil(settings)
    try:
        assert httpx.post(f"{first.otlp_http}/v1/traces", content=body, headers=PROTOBUF).status_code == 200
    finally:
        stop_vigil(first, thread)  # as if the answer had been lost with the process

    second, thread = start_vigil(settings)
    try:
        assert httpx.post(f"{second.otlp_http}/v1/traces", content=body, headers=PROTOBUF).status_code == 200
        assert deduplicated(second) == 1
        assert stored_trace_ids(second, chdb_client, database) == sorted(good_ids)
    finally:
        stop_vigil(second, thread)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Writes:
    """Counts the writes `RequestDedup.once` lets through; fails the next ones when told to."""

    def __init__(self) -> None:
        self.done = 0
        self.failures = 0

    async def __call__(self) -> None:
        await asyncio.sleep(0.01)  # in flight for a moment, as a durable write is
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        self.done += 1


DIGEST = request_digest("traces", "application/x-protobuf", b"body")


def test_a_repeat_after_the_window_is_written_again(tmp_path: Path) -> None:
    clock = Clock()
    dedup = RequestDedup(DedupConfig(window=600), tmp_path / "collector-0.requests", clock=clock)
    dedup.start()
    writes = Writes()
    assert asyncio.run(dedup.once(DIGEST, writes)) is False
    clock.now += 599
    assert asyncio.run(dedup.once(DIGEST, writes)) is True
    clock.now += 2
    assert asyncio.run(dedup.once(DIGEST, writes)) is False
    assert (writes.done, dedup.deduplicated) == (2, 1)


def test_a_repeat_waiting_for_a_first_that_fails_is_written_itself(tmp_path: Path) -> None:
    dedup = RequestDedup(DedupConfig(), None)
    writes = Writes()
    writes.failures = 1

    async def both() -> list[bool | BaseException]:
        return await asyncio.gather(dedup.once(DIGEST, writes), dedup.once(DIGEST, writes), return_exceptions=True)

    first, repeat = asyncio.run(both())
    assert isinstance(first, OSError) and repeat is False
    assert (writes.done, dedup.deduplicated) == (1, 0)


def test_digests_journaled_before_a_restart_are_recognised_and_expired_ones_are_not(tmp_path: Path) -> None:
    clock = Clock()
    journal = tmp_path / "collector-0.requests"
    before = RequestDedup(DedupConfig(window=600), journal, clock=clock)
    before.start()
    old, recent = (request_digest("logs", "application/json", body) for body in (b"old", b"recent"))
    asyncio.run(before.once(old, Writes()))
    clock.now += 300
    asyncio.run(before.once(recent, Writes()))
    before.shutdown()

    clock.now += 301  # `old` is now 601 s old
    after = RequestDedup(DedupConfig(window=600), journal, clock=clock)
    after.start()
    writes = Writes()
    assert [asyncio.run(after.once(d, writes)) for d in (old, recent)] == [False, True]
    assert writes.done == 1


def test_another_collector_process_recognises_a_request_this_one_wrote(tmp_path: Path) -> None:
    first = RequestDedup(DedupConfig(), tmp_path / "collector-0.requests")
    second = RequestDedup(DedupConfig(), tmp_path / "collector-1.requests")
    first.start()
    second.start()  # before the first wrote anything: its journal is followed as it grows
    assert asyncio.run(first.once(DIGEST, Writes())) is False
    assert asyncio.run(second.once(DIGEST, Writes())) is True


def test_memory_and_the_journal_stay_bounded_by_max_requests(tmp_path: Path) -> None:
    journal = tmp_path / "collector-0.requests"
    dedup = RequestDedup(DedupConfig(max_requests=3), journal)
    dedup.start()
    digests = [request_digest("traces", "application/x-protobuf", os.urandom(8)) for _ in range(7)]
    for digest in digests:
        asyncio.run(dedup.once(digest, Writes()))
    # Compacted at 2 x 3 lines to the 3 newest, then one more appended.
    assert [line.split()[1] for line in journal.read_text().splitlines()] == [d.hex() for d in digests[3:]]
    writes = Writes()
    assert [asyncio.run(dedup.once(d, writes)) for d in digests[4:]] == [True, True, True]
    assert asyncio.run(dedup.once(digests[0], writes)) is False  # forgotten: the oldest go first


def test_a_damaged_journal_line_is_skipped(tmp_path: Path) -> None:
    journal = tmp_path / "collector-0.requests"
    clock = Clock()
    journal.write_text(f"garbage\n{int(clock.now * 1000)} {DIGEST.hex()}\n12 zz\n")
    dedup = RequestDedup(DedupConfig(), journal, clock=clock)
    dedup.start()
    assert asyncio.run(dedup.once(DIGEST, Writes())) is True


def test_a_negative_window_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"^dedup window must be 0 \(off\) or a positive duration, got -1$"):
        RequestDedup(DedupConfig(window=-1))


class FailsOnce(SinkConsumer):
    """Takes every batch, but refuses the first one for `table` as a full log would."""

    def __init__(self, table: str) -> None:
        super().__init__()
        self.table = table

    def consume(self, batch: RowBatch) -> None:
        if batch.table == self.table:
            self.table = ""
            raise StoreUnavailable("the write-ahead log is full; retry after a second", 1.0)
        super().consume(batch)


def test_a_retry_of_a_request_refused_after_one_of_its_tables_was_written_writes_only_the_rest(
    tmp_path: Path,
) -> None:
    body = metrics_request(
        gauge("queue.depth", number(7.0)), histogram("latency", hist_point(), hist_point(time_unix_nano=T0 + 1))
    ).SerializeToString()
    sink = FailsOnce("metrics_histogram")
    batcher = Batcher(sink, BatcherConfig(max_batch_age=0.001))
    pool = DecodePool(max_request_bytes=1 << 20)
    dedup = RequestDedup(DedupConfig(window=600), tmp_path / "collector-0.requests")
    ingest = OtlpIngest(pool, batcher, dedup)
    batcher.start()
    pool.start()
    dedup.start()
    try:

        async def export() -> DecodeResult:
            return await ingest.export("metrics", "http", body, "application/x-protobuf", None)

        with pytest.raises(StoreUnavailable):  # the client is told to retry the whole request
            asyncio.run(export())
        assert (sink.rows("metrics_gauge"), sink.rows("metrics_histogram")) == (1, 0)
        assert asyncio.run(export()).num_rows == 3  # the retry: answered for all of it
        assert (sink.rows("metrics_gauge"), sink.rows("metrics_histogram")) == (1, 2)
        assert dedup.deduplicated == 0
        assert asyncio.run(export()).num_rows == 3  # a repeat of the now complete request
        assert (sink.rows("metrics_gauge"), sink.rows("metrics_histogram")) == (1, 2)
        assert dedup.deduplicated == 1
    finally:
        dedup.shutdown()
        pool.shutdown()
        batcher.shutdown()
    assert ingest.counts.snapshot().refused["metrics"]["unavailable"] == 3
