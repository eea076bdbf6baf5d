"""Findings on Vigil itself, from the ingest lag and drops its collector role writes into the store."""

from __future__ import annotations

import pickle
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from tests.conftest import RunningVigil, start_vigil, stop_vigil
from tests.spans import now_ns
from vigil.collector.self_monitoring import SelfSampler
from vigil.detectors.engine import DetectorEngine
from vigil.detectors.runner import DetectorRunner
from vigil.detectors.self_monitoring import SelfMonitoring, ThresholdDetector
from vigil.self_metrics import CollectorSnapshot, DetectorMetrics, WalBacklog
from vigil.settings import load_settings
from vigil.store.client import Client
from vigil.store.findings import FindingQuery, FindingStore
from vigil.store.migrate import migrate
from vigil.store.schema import DdlContext
from vigil.store.write import StoreWriter

# An hour ago, on a whole minute: inside every retention, on bucket boundaries.
T = float(int(time.time()) // 60 * 60 - 3600)


def utc(t: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(t))


def test_a_threshold_detector_round_trips_through_repr_and_pickle() -> None:
    detector = ThresholdDetector(threshold=60.0, critical_above=300.0, what="of ingest lag", unit="s")
    detector.learn_one({"t": 0.0, "y": 75.0})
    assert repr(eval(repr(detector))) == repr(detector)  # the repr is the constructor call
    restored = pickle.loads(pickle.dumps(detector))
    assert restored.anomaly() == detector.anomaly()


def test_lag_and_drops_sampled_into_the_store_become_findings_on_vigil_and_the_round_is_measured(
    chdb_client: Client, database: str
) -> None:
    migrate(chdb_client, DdlContext(database=database))
    oldest: dict[str, float | None] = {"segment": None}  # when the oldest pending segment was written
    snapshot = CollectorSnapshot()
    sampler = SelfSampler(
        StoreWriter(chdb_client, database),
        lambda: WalBacklog(segments=1, bytes=1, oldest=oldest["segment"], limit_bytes=1),
        lambda: {"collector-0": snapshot},
        interval=10,
        instance="host-a",
    )
    # Lag passes 60 s, then 300 s (critical), and recovers; meanwhile 5 logs are refused and 2 spans rejected.
    for i, seconds in enumerate([5, 75, 95, 400, 0, 0, 0, 0, 0, 0, 0, 0]):
        t = T + 10 * i
        oldest["segment"] = t + 1 - seconds if seconds else None
        if i == 1:
            snapshot.refused["logs"]["backpressure"] = 5
            snapshot.rejected["traces"] = 2
        assert sampler.write_sample(now=t + 1)
    # Backpressure returns later as a single 503 burst, a separate excursion.
    snapshot.refused["logs"]["unavailable"] = 3
    assert sampler.write_sample(now=T + 121)

    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    store = FindingStore(chdb_client, database)
    clock = lambda: T + 130.0  # noqa: E731
    engine = DetectorEngine(
        [SelfMonitoring(chdb_client, database, lag_threshold=60.0)],
        store,
        grace=0.0,
        interval=10.0,
        clock=clock,
        metrics=DetectorMetrics(registry, clock=lambda: T + 135.0),
        tracer=provider.get_tracer("test"),
    )
    engine.runners[0].reset(T)
    assert engine.run_once() == 13

    findings = sorted(store.query(FindingQuery(since=0)), key=lambda f: (f.started_at, f.signal))
    assert [
        (f.kind, f.service, f.operation, f.signal, f.status, f.severity, f.started_at, f.ended_at, f.observed, f.unit)
        for f in findings
    ] == [
        ("self_monitoring", "vigil", "host-a", "ingest_lag", "closed", "critical", T + 10, T + 90, 400.0, "s"),
        ("self_monitoring", "vigil", "logs", "refused_items_backpressure", "closed", "warning", T + 10, T + 70, 5.0,
         "items"),
        ("self_monitoring", "vigil", "traces", "rejected_items", "closed", "info", T + 10, T + 70, 2.0, "items"),
        ("self_monitoring", "vigil", "logs", "refused_items_unavailable", "open", "critical", T + 120, None, 3.0,
         "items"),
    ]  # fmt: skip
    assert [f.summary for f in findings] == [
        "400 s of ingest lag on host-a: acknowledged data waits for ClickHouse (threshold 60 s)",
        f"5 log records refused with 429 (slow down) on host-a since {utc(T + 10)}",
        f"2 spans rejected as invalid since {utc(T + 10)}",
        f"3 log records refused with 503 (store unavailable, log full) on host-a since {utc(T + 120)}",
    ]

    # The round is in Vigil's own metrics and traces.
    assert registry.get_sample_value("vigil_detector_lag_seconds", {"detector": "self_monitoring"}) == 5.0
    assert registry.get_sample_value("vigil_detector_round_duration_seconds_count") == 1.0
    assert registry.get_sample_value("vigil_detector_failures_total", {"detector": "self_monitoring"}) is None
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert sorted(spans) == ["detect self_monitoring", "detector round"]
    assert spans["detect self_monitoring"].parent == spans["detector round"].get_span_context()
    assert dict(spans["detector round"].attributes or {}) == {"vigil.buckets": 13}
    engine.stop()
    assert registry.get_sample_value("vigil_detector_lag_seconds", {"detector": "self_monitoring"}) is None


@pytest.fixture
def sampling_vigil(vigil_settings: dict[str, Any]) -> Iterator[RunningVigil]:
    """A Vigil with a four-row queue and a sampler that waits for the test (an hour between samples)."""
    settings = load_settings(
        **{**vigil_settings, "self_metrics_interval": "1h"},
        detectors_enabled=False,
        max_batch_rows=4,
        max_queue_rows=4,
    )
    running, thread = start_vigil(settings)
    try:
        yield running
    finally:
        stop_vigil(running, thread)


def test_a_request_refused_by_a_running_vigil_becomes_a_warning_finding_on_service_vigil(
    sampling_vigil: RunningVigil, chdb_client: Client, database: str
) -> None:
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.extend(
        LogRecord(time_unix_nano=now_ns(), severity_text="INFO") for _ in range(5)
    )
    response = httpx.post(
        f"{sampling_vigil.otlp_http}/v1/logs",
        content=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 429
    sampler = sampling_vigil.vigil.sampler
    assert sampler is not None
    now = time.time()
    assert sampler.write_sample(now)

    store = FindingStore(chdb_client, database)
    runner = DetectorRunner(SelfMonitoring(chdb_client, database), store, grace=0.0, clock=lambda: now + 20)
    runner.reset(now - 20)
    runner.run()
    [finding] = store.query(FindingQuery(since=0))
    onset = now // 10 * 10
    assert (finding.service, finding.operation, finding.signal, finding.status, finding.severity) == (
        "vigil",
        "logs",
        "refused_items_backpressure",
        "open",
        "warning",
    )
    assert (finding.started_at, finding.observed) == (onset, 5.0)
    assert finding.summary == f"5 log records refused with 429 (slow down) on {socket.gethostname()} since {utc(onset)}"
