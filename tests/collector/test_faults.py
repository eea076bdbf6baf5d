"""Faults: ClickHouse unavailable mid-load, a full spill queue, kill -9 under load; nothing acknowledged is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.clickhouse_http import ClickHouseHttp
from tests.collector.test_otlp_grpc import METHOD
from tests.collector.test_otlp_http import PROTOBUF, good_and_bad_request, status_of, stored_trace_ids
from tests.conftest import RunningVigil
from tests.ports import free_port
from tests.spans import now_ns, raw_request
from tests.test_cli import VIGIL, vigil_env, wait_for_trace, wait_ready
from tests.test_roles import Roles
from tests.waiting import wait_until
from vigil.collector.wal import WalCapacity
from vigil.errors import StoreUnavailable
from vigil.store.client import Client, chdb_path
from vigil.store.write import StoreWriter

WAL_FULL = "the write-ahead log is full (1024 bytes) while inserts catch up; retry shortly"
WAL_FULL_AND_STORE_DOWN = "ClickHouse has been unavailable and the write-ahead log is full (1024 bytes); retry later"


class OutageWriter(StoreWriter):
    """The real writer, failing as an unreachable ClickHouse does while `down` is set.

    The first failed insert reaches ClickHouse and only its answer is lost, the ambiguous
    case: the inserter's retry of that group must not count its rows twice.
    """

    def __init__(self, real: StoreWriter) -> None:
        super().__init__(real.client, real.database, local_files=real.local_files)
        self.down = threading.Event()
        self.failed = 0

    def insert_files(self, table: str, directory: Path, names: list[str], *, rows: int, dedup_token: str) -> None:
        if self.down.is_set():
            self.failed += 1
            if self.failed == 1:
                super().insert_files(table, directory, names, rows=rows, dedup_token=dedup_token)
            raise StoreUnavailable("ClickHouse did not answer: connection refused")
        super().insert_files(table, directory, names, rows=rows, dedup_token=dedup_token)


@pytest.fixture
def outage(vigil_server: RunningVigil) -> OutageWriter:
    inserter = vigil_server.vigil.inserter
    assert inserter is not None and isinstance(inserter.writer, StoreWriter)
    inserter.writer = OutageWriter(inserter.writer)  # the inserter takes its writer at each insert
    return inserter.writer


def readyz(vigil: RunningVigil) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{vigil.api}/readyz")
    return response.status_code, response.json()


def wal_bytes(vigil: RunningVigil) -> int:
    return WalCapacity(Path(vigil.settings.wal_path), vigil.settings.max_wal_bytes).size_bytes()


def sdk_spans(provider: TracerProvider, memory: InMemorySpanExporter, n: int) -> list[ReadableSpan]:
    tracer = provider.get_tracer("faults")
    for i in range(n):
        tracer.start_span(f"op-{i % 3}").end()
    spans = list(memory.get_finished_spans())
    memory.clear()
    return spans


def stored_span_counts(vigil: RunningVigil, client: Client, database: str) -> dict[str, int]:
    vigil.flush()
    rows = client.query(f"SELECT SpanId, count() FROM {database}.spans GROUP BY SpanId").result_rows
    return {span_id: count for span_id, count in rows}


def test_spans_exported_across_a_store_outage_are_all_stored_exactly_once(
    vigil_server: RunningVigil, outage: OutageWriter, chdb_client: Client, database: str
) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "outage"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    exporters = [
        HttpSpanExporter(endpoint=f"{vigil_server.otlp_http}/v1/traces"),
        GrpcSpanExporter(endpoint=vigil_server.otlp_grpc, insecure=True),
    ]
    inserter = vigil_server.vigil.inserter
    assert inserter is not None
    acknowledged: list[str] = []
    try:
        for batch in range(30):
            if batch == 10:
                outage.down.set()  # ClickHouse goes away mid-load
            if batch == 20:
                assert wait_until(lambda: inserter.failing)
                # A collector is ready while its spill queue has room, ClickHouse or not.
                assert readyz(vigil_server) == (
                    200,
                    {
                        "status": "ready",
                        "store": "down",
                        "spill_queue_bytes": wal_bytes(vigil_server),
                        "spill_queue_limit": 2 * 1024**3,
                    },
                )
                outage.down.clear()
            spans = sdk_spans(provider, memory, 20)
            if exporters[batch % 2].export(spans) is SpanExportResult.SUCCESS:
                acknowledged += [f"{span.context.span_id:016x}" for span in spans]
    finally:
        for exporter in exporters:
            exporter.shutdown()
        provider.shutdown()

    assert len(acknowledged) == 600
    assert stored_span_counts(vigil_server, chdb_client, database) == dict.fromkeys(acknowledged, 1)
    # The rollup fed by a materialized view counted each once too (every span here is a root).
    [(requests,)] = chdb_client.query(f"SELECT sum(Requests) FROM {database}.spans_red_1m").result_rows
    assert requests == 600
    assert readyz(vigil_server)[1]["store"] == "up"


@pytest.fixture
def export(vigil_server: RunningVigil) -> Iterator[grpc.UnaryUnaryMultiCallable]:
    with grpc.insecure_channel(vigil_server.otlp_grpc) as channel:
        yield channel.unary_unary(
            METHOD, request_serializer=lambda body: body, response_deserializer=ExportTraceServiceResponse.FromString
        )


def grpc_refusal(export: grpc.UnaryUnaryMultiCallable, body: bytes) -> tuple[grpc.StatusCode, str, int]:
    """The status code, message and RetryInfo delay (ms) of a refused export."""
    with pytest.raises(grpc.RpcError) as info:
        export(body, timeout=10)
    status = rpc_status.from_call(info.value)
    assert status is not None and len(status.details) == 1
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry)
    return info.value.code(), status.message, retry.retry_delay.ToMilliseconds()


@pytest.fixture
def tiny_spill_queue(vigil_settings: dict[str, Any]) -> dict[str, Any]:
    vigil_settings.update(max_wal_bytes=1024)  # one small segment fills it
    return vigil_settings


@pytest.fixture
def lagging_inserts(tiny_spill_queue: dict[str, Any]) -> dict[str, Any]:
    tiny_spill_queue.update(insert_interval="1h")  # segments stay in the log until a flush
    return tiny_spill_queue


def test_a_full_spill_queue_while_inserts_catch_up_is_429_and_resource_exhausted_and_keeps_what_it_took(
    lagging_inserts: dict[str, Any],
    vigil_server: RunningVigil,
    export: grpc.UnaryUnaryMultiCallable,
    chdb_client: Client,
    database: str,
) -> None:
    first, first_ids = good_and_bad_request()
    assert httpx.post(f"{vigil_server.otlp_http}/v1/traces", content=first, headers=PROTOBUF).status_code == 200

    second, _ = good_and_bad_request()
    response = httpx.post(f"{vigil_server.otlp_http}/v1/traces", content=second, headers=PROTOBUF)
    assert (response.status_code, response.headers["retry-after"]) == (429, "1")
    assert (status_of(response).code, status_of(response).message) == (code_pb2.RESOURCE_EXHAUSTED, WAL_FULL)
    assert grpc_refusal(export, second) == (grpc.StatusCode.RESOURCE_EXHAUSTED, WAL_FULL, 1000)
    held = wal_bytes(vigil_server)
    assert readyz(vigil_server) == (
        503,
        {
            "status": "not ready",
            "store": "up",
            "spill_queue_bytes": held,
            "spill_queue_limit": 1024,
            "reason": WAL_FULL,
        },
    )

    assert stored_trace_ids(vigil_server, chdb_client, database) == sorted(first_ids)  # flushes the log
    assert readyz(vigil_server) == (
        200,
        {"status": "ready", "store": "up", "spill_queue_bytes": 0, "spill_queue_limit": 1024},
    )


def test_a_full_spill_queue_during_a_store_outage_is_503_and_unavailable_and_keeps_what_it_took(
    tiny_spill_queue: dict[str, Any],
    vigil_server: RunningVigil,
    outage: OutageWriter,
    export: grpc.UnaryUnaryMultiCallable,
    chdb_client: Client,
    database: str,
) -> None:
    outage.down.set()
    first, first_ids = good_and_bad_request()
    assert httpx.post(f"{vigil_server.otlp_http}/v1/traces", content=first, headers=PROTOBUF).status_code == 200
    inserter = vigil_server.vigil.inserter
    assert inserter is not None
    assert wait_until(lambda: inserter.failing)

    second, _ = good_and_bad_request()
    response = httpx.post(f"{vigil_server.otlp_http}/v1/traces", content=second, headers=PROTOBUF)
    assert (response.status_code, response.headers["retry-after"]) == (503, "5")
    assert (status_of(response).code, status_of(response).message) == (code_pb2.UNAVAILABLE, WAL_FULL_AND_STORE_DOWN)
    assert grpc_refusal(export, second) == (grpc.StatusCode.UNAVAILABLE, WAL_FULL_AND_STORE_DOWN, 5000)
    held = wal_bytes(vigil_server)
    assert readyz(vigil_server) == (
        503,
        {
            "status": "not ready",
            "store": "down",
            "spill_queue_bytes": held,
            "spill_queue_limit": 1024,
            "reason": WAL_FULL_AND_STORE_DOWN,
        },
    )

    outage.down.clear()
    # Its first failed insert had reached ClickHouse: the retry under the same token added nothing.
    assert stored_trace_ids(vigil_server, chdb_client, database) == sorted(first_ids)
    assert readyz(vigil_server)[0] == 200


def test_a_collector_whose_clickhouse_server_refuses_connections_replays_its_data_when_the_server_comes(
    vigil_settings: dict[str, Any], tmp_path: Path, chdb_url: str, chdb_client: Client, database: str
) -> None:
    # Nothing listens on this port yet: every connection is refused, from the first start on.
    clickhouse = ClickHouseHttp(chdb_path(chdb_url), port=free_port())
    limit = 64 * 1024
    settings = {**vigil_settings, "clickhouse_url": clickhouse.url(database), "max_wal_bytes": limit}
    roles = Roles()
    try:
        collector = roles.start({"collector"}, **settings)
        inserter = collector.vigil.inserter
        assert inserter is not None
        url = f"{collector.otlp_http}/v1/traces"
        acknowledged: list[str] = []
        refused: httpx.Response | None = None
        for _ in range(200):  # until the spill queue is full; a request adds about 8 KB
            body, good_ids = good_and_bad_request()
            response = httpx.post(url, content=body, headers=PROTOBUF)
            if response.status_code != 200:
                refused = response
                break
            acknowledged += good_ids
            assert wait_until(lambda: inserter.failing)  # from the first request on: ClickHouse never answers
            if len(acknowledged) == len(good_ids):
                # Ready: the spill queue takes what ClickHouse cannot.
                response = httpx.get(f"{collector.api}/readyz")
                assert (response.status_code, response.json()) == (
                    200,
                    {
                        "status": "ready",
                        "store": "down",
                        "spill_queue_bytes": WalCapacity(tmp_path / "wal", limit).size_bytes(),
                        "spill_queue_limit": limit,
                    },
                )
        assert refused is not None
        assert (refused.status_code, refused.headers["retry-after"]) == (503, "5")
        message = f"ClickHouse has been unavailable and the write-ahead log is full ({limit} bytes); retry later"
        assert status_of(refused).message == message
        response = httpx.get(f"{collector.api}/readyz")
        assert (response.status_code, response.json()) == (
            503,
            {
                "status": "not ready",
                "store": "down",
                "spill_queue_bytes": WalCapacity(tmp_path / "wal", limit).size_bytes(),
                "spill_queue_limit": limit,
                "reason": message,
            },
        )

        # The server comes: the collector connects, creates the schema and replays its log, oldest first.
        clickhouse.start()
        assert wait_until(lambda: not inserter.failing, timeout_s=60)
        assert inserter.wait_idle(60)
        assert chdb_client.query(f"EXISTS TABLE {database}.spans").result_rows == [(1,)]
        rows = chdb_client.query(f"SELECT TraceId, count() FROM {database}.spans GROUP BY TraceId").result_rows
        assert sorted(rows) == [(trace_id, 1) for trace_id in sorted(acknowledged)]
        assert wait_until(lambda: httpx.get(f"{collector.api}/readyz").json()["store"] == "up")
        # Sent as Arrow over HTTP (a server cannot read the collector's files), each accepted.
        inserts = clickhouse.statements(rf"^INSERT INTO {database}\.spans\b")
        assert inserts and {(s.sql.split()[-1], s.error_code) for s in inserts} == {("Arrow", None)}
    finally:
        roles.stop_all()
        clickhouse.stop()


class Load(threading.Thread):
    """Sends OTLP/HTTP requests of 10 spans of one trace, recording the acknowledged ones, until it fails."""

    def __init__(self, url: str) -> None:
        super().__init__(name="fault-load", daemon=True)
        self.url = url
        self.acknowledged: dict[str, list[str]] = {}  # trace id -> its span ids

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(100_000):  # bounded; ends at the kill
                trace_id = os.urandom(16)
                span_ids = [os.urandom(8) for _ in range(10)]
                start = now_ns()
                spans = [{"trace_id": trace_id, "span_id": s, "start": start, "end": start + 7} for s in span_ids]
                try:
                    response = client.post(self.url, content=raw_request(spans).SerializeToString(), headers=PROTOBUF)
                except httpx.TransportError:
                    return  # Vigil is gone
                if response.status_code == 200:
                    self.acknowledged[trace_id.hex()] = sorted(s.hex() for s in span_ids)


def serve(env: dict[str, str], log: Any, processes: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    # Its own process group, so that a kill takes its collector process with it.
    process = subprocess.Popen([*VIGIL, "serve"], env=env, stdout=log, stderr=log, text=True, start_new_session=True)
    processes.append(process)
    wait_ready(env, process, log=Path(log.name))
    return process


@pytest.mark.slow
def test_every_span_acknowledged_before_a_kill_9_under_load_is_stored_after_the_restart(tmp_path: Path) -> None:
    env = vigil_env(tmp_path / "data")  # with one collector process
    env["VIGIL_DETECTORS_ENABLED"] = "false"
    processes: list[subprocess.Popen[str]] = []
    with (tmp_path / "vigil.log").open("w") as log:
        try:
            first = serve(env, log, processes)
            loads = [Load(f"http://127.0.0.1:{env['VIGIL_OTLP_HTTP_PORT']}/v1/traces") for _ in range(2)]
            for load in loads:
                load.start()
            # Some rows inserted by now, some only in the log, some requests in flight: SIGKILL.
            assert wait_until(lambda: sum(len(load.acknowledged) for load in loads) >= 60, timeout_s=60)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
            for load in loads:
                load.join(timeout=30)
            acknowledged = {trace: spans for load in loads for trace, spans in load.acknowledged.items()}

            serve(env, log, processes)
            for trace_id, span_ids in acknowledged.items():
                trace = wait_for_trace(env, trace_id)
                assert sorted(span["span_id"] for span in trace["spans"]) == span_ids  # type: ignore[attr-defined]
        finally:
            for process in processes:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=30)
