"""Ingest benchmark: pre-encoded OTLP requests into a real `vigil serve`, over HTTP and gRPC.

    .venv/bin/python -m tests.bench.ingest_otlp [--signal traces|logs] [--seconds 20] [--concurrency 4] [--workers -1]

A traces request holds 1,000 spans with 10 attributes (6 strings, 2 ints, a double, a bool), the
OpenTelemetry SDK benchmark's shape; a logs request 1,000 log records with 10 attributes and a
~70-byte body. For each transport it sends for a fixed time from `--concurrency` threads, then
stops Vigil (which drains its queue), opens the data directory and counts the items actually
stored. It prints items/s stored and the peak RSS of the Vigil process plus its collector
processes. It asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

SPANS_PER_REQUEST = 1000
# Per signal: the gRPC method, the HTTP path and the table the items land in.
SIGNALS = {
    "traces": ("/opentelemetry.proto.collector.trace.v1.TraceService/Export", "/v1/traces", "spans"),
    "logs": ("/opentelemetry.proto.collector.logs.v1.LogsService/Export", "/v1/logs", "logs"),
}


def build_request(rng: random.Random, n: int = SPANS_PER_REQUEST) -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name", value=AnyValue(string_value="checkout"))
    resource_spans.resource.attributes.add(key="service.version", value=AnyValue(string_value="1.0.0"))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "bench"
    t0 = time.time_ns() - 60_000_000_000
    for i in range(n):
        span = scope_spans.spans.add()
        span.trace_id = rng.randbytes(16)
        span.span_id = rng.randbytes(8)
        span.parent_span_id = rng.randbytes(8)
        span.name = f"GET /api/v1/items/{i % 50}"
        span.kind = 2
        span.status.code = 1
        span.start_time_unix_nano = t0 + i * 1000
        span.end_time_unix_nano = t0 + i * 1000 + rng.randrange(100_000, 50_000_000)
        for key, value in [
            ("http.request.method", AnyValue(string_value="GET")),
            ("http.route", AnyValue(string_value=f"/api/v1/items/{i % 50}")),
            ("http.response.status_code", AnyValue(int_value=200)),
            ("url.scheme", AnyValue(string_value="https")),
            ("server.address", AnyValue(string_value="api.example.com")),
            ("server.port", AnyValue(int_value=443)),
            ("network.peer.address", AnyValue(string_value=f"10.1.{i % 256}.{i % 200}")),
            ("user_agent.original", AnyValue(string_value="Mozilla/5.0 (X11; Linux x86_64)")),
            ("db.duration_ms", AnyValue(double_value=rng.random() * 10)),
            ("cache.hit", AnyValue(bool_value=bool(i % 2))),
        ]:
            span.attributes.add(key=key, value=value)
    return request.SerializeToString()


def build_logs_request(rng: random.Random, n: int = SPANS_PER_REQUEST) -> bytes:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name", value=AnyValue(string_value="checkout"))
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = "app.checkout"
    t0 = time.time_ns()
    for i in range(n):
        record = scope_logs.log_records.add(
            time_unix_nano=t0 + i, observed_time_unix_nano=t0 + i + 1000, severity_number=9, severity_text="INFO"
        )
        record.trace_id = rng.randbytes(16)
        record.span_id = rng.randbytes(8)
        record.body.string_value = (
            f"order {i} accepted for customer {i % 97} after {rng.randrange(1, 900)} ms in stage 2"
        )
        for key, value in [
            ("code.function.name", AnyValue(string_value="accept")),
            ("code.file.path", AnyValue(string_value="/srv/app/orders.py")),
            ("code.line.number", AnyValue(int_value=118)),
            ("order.id", AnyValue(int_value=i)),
            ("customer.tier", AnyValue(string_value=("free", "pro", "enterprise")[i % 3])),
            ("http.route", AnyValue(string_value=f"/orders/{i % 20}")),
            ("retry", AnyValue(bool_value=i % 7 == 0)),
            ("amount", AnyValue(double_value=rng.random() * 100)),
            ("region", AnyValue(string_value="eu-west-1")),
            ("thread.name", AnyValue(string_value=f"worker-{i % 8}")),
        ]:
            record.attributes.add(key=key, value=value)
    return request.SerializeToString()


class DistinctBodies:
    """Pre-encoded requests, each send made distinct by writing a counter over 16-byte `markers` it holds.

    Vigil takes a repeat of an identical body within VIGIL_DEDUP_WINDOW for an exporter's retry
    and stores it once, and real exporters never send the same items twice otherwise. The
    markers are the items' trace ids (so every request's traces are new) or any 16 bytes found in
    the body; they are overwritten with ASCII hex (valid in a string field too), so sizes stay.

    With `restamp`, every send also moves the items' timestamps on by the time passed since the
    bodies were built, as a live exporter's would be: without it a long run piles all its spans
    into the minute it started, and "the last 15 minutes" ends up holding all or none of them.
    """

    def __init__(
        self, bodies: list[bytes], markers: list[list[bytes]], signal_name: str, *, restamp: bool = False
    ) -> None:
        self.bodies = bodies
        self.offsets = [_offsets(body, found) for body, found in zip(bodies, markers, strict=True)]
        self.stamps = [_timestamps(body, signal_name) for body in bodies] if restamp else [[] for _ in bodies]
        self._built_ns = time.time_ns()
        self._counter = itertools.count(1)  # next() is atomic under the GIL: threads may share it

    @classmethod
    def by_trace_ids(cls, bodies: list[bytes], signal_name: str, *, restamp: bool = False) -> DistinctBodies:
        markers = [[item.trace_id for item in _items(body, signal_name)] for body in bodies]
        return cls(bodies, markers, signal_name, restamp=restamp)

    def next(self) -> bytes:
        n = next(self._counter)
        i = n % len(self.bodies)
        body = bytearray(self.bodies[i])
        for j, offset in enumerate(self.offsets[i]):
            body[offset : offset + 16] = b"%012x%04x" % (n, j)
        if self.stamps[i]:
            passed_ns = time.time_ns() - self._built_ns
            for offset, built_ns in self.stamps[i]:
                struct.pack_into("<Q", body, offset, built_ns + passed_ns)
        return bytes(body)


def _items(body: bytes, signal_name: str) -> list[Any]:
    """The spans, log records or (gauge and sum) data points of a request, in encoding order."""
    if signal_name == "traces":
        traces = ExportTraceServiceRequest.FromString(body)
        return [s for rs in traces.resource_spans for ss in rs.scope_spans for s in ss.spans]
    if signal_name == "logs":
        logs = ExportLogsServiceRequest.FromString(body)
        return [r for rl in logs.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    metrics = ExportMetricsServiceRequest.FromString(body)
    return [
        point
        for rm in metrics.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        for point in (*metric.gauge.data_points, *metric.sum.data_points)
    ]


# The fixed64 timestamp fields (numbers in the OTLP protos) of each signal's items.
_TIMESTAMP_FIELDS = {
    "traces": {"start_time_unix_nano": 7, "end_time_unix_nano": 8},
    "logs": {"time_unix_nano": 1, "observed_time_unix_nano": 11},
    "metrics": {"start_time_unix_nano": 2, "time_unix_nano": 3},
}


def _timestamps(body: bytes, signal_name: str) -> list[tuple[int, int]]:
    """(offset, value) of every set timestamp of `body`'s items (gauge and sum points for metrics).

    Each is found by its field's tag byte and value, searching on from the previous one: fields
    are encoded in the order their items are.
    """
    found = []
    at = 0
    for item in _items(body, signal_name):
        for name, number in _TIMESTAMP_FIELDS[signal_name].items():
            value = getattr(item, name)
            if value:  # proto3 leaves zero unencoded
                at = body.index(bytes([number << 3 | 1]) + struct.pack("<Q", value), at) + 1
                found.append((at, value))
                at += 8
    return found


def _offsets(body: bytes, markers: list[bytes]) -> list[int]:
    """Where each marker is, searching on from the previous one (they appear in order)."""
    offsets = []
    at = 0
    for marker in markers:
        at = body.index(marker, at)
        offsets.append(at)
        at += len(marker)
    return offsets


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_pids(pid: int) -> list[int]:
    """The live children of `pid`, whichever of its threads started them.

    /proc lists a child under the thread that forked it: Vigil starts its collector processes from
    an executor thread, so the main thread's list alone misses them.
    """
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(p) for p in children.read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return found


def tree_peak_rss_mb(pid: int) -> float:
    """Peak RSS (VmHWM) of `pid` plus its live children, in MiB."""
    pids = [pid, *child_pids(pid)]
    total_kb = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total_kb / 1024


def send_http(
    signal_name: str, port: int, bodies: DistinctBodies, stop: threading.Event, counts: list[int], errors: list[str]
) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            response = client.post(
                f"http://127.0.0.1:{port}{SIGNALS[signal_name][1]}",
                content=bodies.next(),
                headers={"Content-Type": "application/x-protobuf"},
            )
            if response.status_code == 200:
                counts.append(SPANS_PER_REQUEST)
            else:
                errors.append(str(response.status_code))
                time.sleep(0.05)


def send_grpc(
    signal_name: str, port: int, bodies: DistinctBodies, stop: threading.Event, counts: list[int], errors: list[str]
) -> None:
    # Separate connections, as separate exporter processes would have (channels share one by default).
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
    export = channel.unary_unary(
        SIGNALS[signal_name][0], request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    while not stop.is_set():
        try:
            export(bodies.next(), timeout=30)
            counts.append(SPANS_PER_REQUEST)
        except grpc.RpcError as exc:
            errors.append(exc.code().name)
            time.sleep(0.05)
    channel.close()


def count_stored(data_dir: Path, table: str) -> int:
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{data_dir}")
    return int(client.query(f"SELECT count() FROM vigil.{table}").result_rows[0][0])


def run(
    signal_name: str, transport: str, seconds: float, concurrency: int, workers: int, bodies: DistinctBodies
) -> dict[str, float]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"vigil-bench-{transport}-"))
    env = dict(os.environ)  # VIGIL_* settings pass through, so a run can tune the server
    ports = {"VIGIL_HTTP_PORT": free_port(), "VIGIL_OTLP_HTTP_PORT": free_port(), "VIGIL_OTLP_GRPC_PORT": free_port()}
    env.update({k: str(v) for k, v in ports.items()})
    env.update(
        VIGIL_CLICKHOUSE_URL=f"chdb://{data_dir}", VIGIL_COLLECTOR_PROCESSES=str(workers), VIGIL_LOG_LEVEL="WARNING"
    )
    server = subprocess.Popen([sys.executable, "-m", "vigil.cli", "serve"], env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{ports['VIGIL_HTTP_PORT']}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("vigil serve did not start")
            time.sleep(0.2)
        stop = threading.Event()
        counts: list[int] = []
        errors: list[str] = []
        sender, port = (
            (send_http, ports["VIGIL_OTLP_HTTP_PORT"])
            if transport == "http"
            else (send_grpc, ports["VIGIL_OTLP_GRPC_PORT"])
        )
        threads = [
            threading.Thread(target=sender, args=(signal_name, port, bodies, stop, counts, errors))
            for _ in range(concurrency)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        peak_rss = tree_peak_rss_mb(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    stored = count_stored(data_dir, SIGNALS[signal_name][2])
    return {
        "acknowledged": float(sum(counts)),
        "stored": float(stored),
        "per_s": stored / elapsed,
        "peak_rss_mb": peak_rss,
        "refusals": float(len(errors)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=-1, help="VIGIL_COLLECTOR_PROCESSES for the server")
    parser.add_argument("--transport", choices=["http", "grpc", "both"], default="both")
    parser.add_argument("--signal", choices=sorted(SIGNALS), default="traces")
    args = parser.parse_args()
    rng = random.Random(1)
    build = build_request if args.signal == "traces" else build_logs_request
    bodies = DistinctBodies.by_trace_ids([build(rng) for _ in range(16)], args.signal)
    item = "spans" if args.signal == "traces" else "log records"
    print(f"request: {SPANS_PER_REQUEST} {item} x 10 attributes, {len(bodies.bodies[0]):,} bytes of protobuf")
    transports = ["http", "grpc"] if args.transport == "both" else [args.transport]
    for transport in transports:
        result = run(args.signal, transport, args.seconds, args.concurrency, args.workers, bodies)
        print(
            f"{transport:5s} collector_processes={args.workers} concurrency={args.concurrency} "
            f"seconds={args.seconds:.0f}: "
            f"{result['per_s']:,.0f} {item}/s stored "
            f"(stored {result['stored']:,.0f}, acknowledged {result['acknowledged']:,.0f}, "
            f"refused requests {result['refusals']:.0f}), peak RSS {result['peak_rss_mb']:,.0f} MiB"
        )


if __name__ == "__main__":
    main()
