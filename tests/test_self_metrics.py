"""Vigil's own /metrics: what its collectors, inserter, detectors and alerts count, per Vigil instance."""

from __future__ import annotations

import gzip
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningVigil, start_vigil, stop_vigil
from tests.spans import now_ns, raw_request
from vigil.alerts.engine import AlertEngine, AlertLoop
from vigil.self_metrics import AlertMetrics, CollectorSnapshot, read_snapshot, write_snapshot
from vigil.settings import load_settings
from vigil.store.alerts import Notification
from vigil.store.client import Client
from vigil.store.migrate import ddl_context, migrate

PROTOBUF = {"Content-Type": "application/x-protobuf"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base_url: str) -> Samples:
    """Every sample of /metrics, parsed by prometheus-client's own parser: {(name, labels): value}."""
    response = httpx.get(f"{base_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def starting(samples: Samples, *prefixes: str) -> Samples:
    return {key: value for key, value in samples.items() if key[0].startswith(prefixes)}


def per_signal(name: str, values: dict[str, float], **labels: str) -> Samples:
    signals = ("flows", "logs", "metrics", "statsd", "traces")
    return {
        (name, tuple(sorted({"collector": "collector-0", "signal": s, **labels}.items()))): values.get(s, 0.0)
        for s in signals
    }


@pytest.fixture
def small_queue_vigil(vigil_settings: dict[str, Any]) -> Iterator[RunningVigil]:
    """A Vigil whose queue holds 4 rows, so a request of 5 is refused with 429."""
    settings = load_settings(**vigil_settings, detectors_enabled=False, max_batch_rows=4, max_queue_rows=4)
    running, thread = start_vigil(settings)
    try:
        yield running
    finally:
        stop_vigil(running, thread)


def logs_request(count: int) -> bytes:
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    records.extend(LogRecord(time_unix_nano=now_ns(), severity_text="INFO") for _ in range(count))
    return request.SerializeToString()


def test_metrics_count_accepted_rejected_refused_written_and_inserted_items_of_this_vigil_only(
    small_queue_vigil: RunningVigil, vigil_settings: dict[str, Any], database: str, tmp_path: Path
) -> None:
    vigil = small_queue_vigil
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(b"jobs.done:1|c\nnot a statsd line", ("127.0.0.1", vigil.ports.statsd))
    statsd_row = ("vigil_wal_appended_rows_total", (("collector", "collector-0"), ("table", "metrics_sum")))
    for _ in range(100):  # read on the collector's loop, then aggregated for VIGIL_STATSD_FLUSH_INTERVAL
        if scrape(vigil.api).get(statsd_row) == 1.0:
            break
        time.sleep(0.05)
    start = now_ns()
    good = [{"trace_id": os.urandom(16), "span_id": os.urandom(8), "start": start, "end": start + 9} for _ in range(3)]
    bad = [{"trace_id": b"\x01\x02", "span_id": os.urandom(8), "start": start, "end": start + 9} for _ in range(2)]
    traces = raw_request([good[0], bad[0], good[1], bad[1], good[2]]).SerializeToString()
    assert httpx.post(f"{vigil.otlp_http}/v1/traces", content=traces, headers=PROTOBUF).status_code == 200
    assert httpx.post(f"{vigil.otlp_http}/v1/logs", content=logs_request(5), headers=PROTOBUF).status_code == 429
    assert httpx.post(f"{vigil.otlp_http}/v1/metrics", content=b"\xff\xff", headers=PROTOBUF).status_code == 400
    too_large = b"\0" * (vigil.settings.max_request_bytes + 70_000)  # past the limit and its slack as sent
    assert httpx.post(f"{vigil.otlp_http}/v1/logs", content=too_large, headers=PROTOBUF).status_code == 413
    inflating = gzip.compress(b"\0" * (vigil.settings.max_request_bytes + 1))  # past it once inflated
    gzipped = {**PROTOBUF, "Content-Encoding": "gzip"}
    assert httpx.post(f"{vigil.otlp_http}/v1/logs", content=inflating, headers=gzipped).status_code == 413
    assert (
        httpx.post(f"{vigil.otlp_http}/v1/traces", content=b"x", headers={"Content-Type": "text/csv"}).status_code
        == 415
    )
    zstd = {**PROTOBUF, "Content-Encoding": "zstd"}
    assert httpx.post(f"{vigil.otlp_http}/v1/traces", content=b"x", headers=zstd).status_code == 415
    vigil.flush()
    samples = scrape(vigil.api)

    assert starting(samples, "vigil_receiver_") == {
        **per_signal("vigil_receiver_accepted_items_total", {"traces": 3.0, "statsd": 1.0}),
        **per_signal("vigil_receiver_rejected_items_total", {"traces": 2.0, "statsd": 1.0}),
        **per_signal("vigil_receiver_rejected_requests_total", {"metrics": 1.0}, reason="undecodable"),
        **per_signal("vigil_receiver_rejected_requests_total", {"logs": 2.0}, reason="too_large"),
        **per_signal("vigil_receiver_rejected_requests_total", {"traces": 2.0}, reason="unsupported"),
        **per_signal("vigil_receiver_dropped_items_total", {}),
        **per_signal("vigil_receiver_refused_items_total", {"logs": 5.0}, reason="backpressure"),
        **per_signal("vigil_receiver_refused_items_total", {}, reason="unavailable"),
        **per_signal("vigil_receiver_refused_items_total", {}, reason="error"),
        ("vigil_receiver_deduplicated_requests_total", (("collector", "collector-0"),)): 0.0,
    }
    assert samples[("vigil_wal_appended_rows_total", (("collector", "collector-0"), ("table", "spans")))] == 3.0
    assert samples[("vigil_inserter_inserted_rows_total", (("table", "spans"),))] == 3.0
    assert samples[("vigil_inserter_insert_duration_seconds_count", (("table", "spans"),))] == 1.0
    assert starting(samples, "vigil_inserter_failures_total", "vigil_store_", "vigil_wal_p", "vigil_wal_o") == {
        ("vigil_inserter_failures_total", (("reason", "error"),)): 0.0,
        ("vigil_inserter_failures_total", (("reason", "quarantined"),)): 0.0,
        ("vigil_inserter_failures_total", (("reason", "unavailable"),)): 0.0,
        ("vigil_store_unavailable", ()): 0.0,
        ("vigil_wal_pending_bytes", ()): 0.0,
        ("vigil_wal_pending_segments", ()): 0.0,
        ("vigil_wal_oldest_pending_age_seconds", ()): 0.0,
    }
    assert samples[("vigil_wal_limit_bytes", ())] == float(vigil.settings.max_wal_bytes)
    assert samples[("vigil_batcher_queued_rows", (("collector", "collector-0"),))] == 0.0

    # A second Vigil in this process counts only what it received itself: nothing.
    other_settings = {**vigil_settings, "wal_dir": str(tmp_path / "other-wal"), "clickhouse_database": database + "_b"}
    other, thread = start_vigil(load_settings(**other_settings, detectors_enabled=False))
    try:
        other_samples = scrape(other.api)
    finally:
        stop_vigil(other, thread)
    assert starting(other_samples, "vigil_receiver_accepted") == per_signal("vigil_receiver_accepted_items_total", {})
    assert starting(other_samples, "vigil_inserter_inserted_rows") == {}


def requests_counted(samples: Samples, route: str, method: str, status: str) -> float:
    labels = (("method", method), ("route", route), ("status", status))
    return samples[("vigil_http_request_duration_seconds_count", labels)]


def test_http_requests_are_timed_by_route_template_method_and_status(vigil_server: RunningVigil) -> None:
    api = vigil_server.api
    assert httpx.get(f"{api}/api/v1/traces/{'ab' * 16}").status_code == 404
    assert httpx.get(f"{api}/api/v1/traces/{'cd' * 16}").status_code == 404
    assert httpx.get(f"{api}/api/v1/services", params={"since": "soon"}).status_code == 422
    assert httpx.get(f"{api}/traces").status_code == 200
    assert httpx.get(f"{api}/no/such/page/{os.urandom(4).hex()}").status_code == 404
    samples = scrape(api)  # a scrape is counted once it has answered, so not in its own answer

    assert {key[1] for key in starting(samples, "vigil_http_request_duration_seconds_count")} == {
        (("method", "GET"), ("route", "/api/v1/traces/{trace_id}"), ("status", "404")),
        (("method", "GET"), ("route", "/api/v1/services"), ("status", "422")),
        (("method", "GET"), ("route", "/traces"), ("status", "200")),
        (("method", "GET"), ("route", "unmatched"), ("status", "404")),  # never the path: it is unbounded
    }
    assert requests_counted(samples, "/api/v1/traces/{trace_id}", "GET", "404") == 2.0
    assert requests_counted(samples, "unmatched", "GET", "404") == 1.0
    le_30s = (("le", "30.0"), ("method", "GET"), ("route", "/traces"), ("status", "200"))
    assert samples[("vigil_http_request_duration_seconds_bucket", le_30s)] == 1.0
    assert requests_counted(scrape(api), "/metrics", "GET", "200") == 1.0


def test_a_collector_alone_serves_metrics_beside_its_probes(vigil_settings: dict[str, Any]) -> None:
    running, thread = start_vigil(load_settings(**vigil_settings), frozenset({"collector"}))
    try:
        samples = scrape(running.api)
    finally:
        stop_vigil(running, thread)
    assert starting(samples, "vigil_receiver_refused") == {
        **per_signal("vigil_receiver_refused_items_total", {}, reason="backpressure"),
        **per_signal("vigil_receiver_refused_items_total", {}, reason="unavailable"),
        **per_signal("vigil_receiver_refused_items_total", {}, reason="error"),
    }
    assert samples[("vigil_store_unavailable", ())] == 0.0
    # A collector neither detects nor alerts.
    assert starting(samples, "vigil_detector_", "vigil_alert_") == {}


def test_a_snapshot_survives_its_json_file_and_a_missing_or_torn_file_reads_as_none(tmp_path: Path) -> None:
    snapshot = CollectorSnapshot()
    snapshot.accepted["traces"] = 7
    snapshot.refused["logs"]["unavailable"] = 3
    snapshot.wal_rows = {"spans": 7}
    snapshot.wal_bytes, snapshot.queued_rows = 900, 2
    path = tmp_path / "metrics.json"
    write_snapshot(path, snapshot)
    assert read_snapshot(path) == snapshot
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # the partial file was renamed into place
    assert read_snapshot(tmp_path / "absent.json") is None
    path.write_text('{"accepted": {"traces": 7')
    assert read_snapshot(path) is None


def test_a_snapshot_from_a_vigil_that_counted_only_undecodable_requests_reads_as_those(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text('{"accepted": {"metrics": 4}, "rejected_requests": {"metrics": 2}}')  # during an upgrade
    snapshot = read_snapshot(path)
    assert snapshot is not None
    assert snapshot.rejected_requests["metrics"] == {"undecodable": 2, "too_large": 0, "unsupported": 0}
    assert snapshot.accepted["metrics"] == 4


def test_the_alert_loop_reports_undelivered_notifications_and_the_oldest_ones_age(
    chdb_client: Client, database: str
) -> None:
    migrate(chdb_client, ddl_context(load_settings(), database))
    created = float(int(time.time()) - 100)  # whole seconds: the outbox keeps milliseconds
    engine = AlertEngine(chdb_client, database, default_channel="#alerts", public_url="http://vigil")
    engine.store.enqueue(
        [
            Notification(id=f"n-{i}", group_id="g-1", channel="#alerts", action="post", text="t", blocks=[],
                         created_at=created + i)
            for i in range(2)
        ]
    )  # fmt: skip
    registry = CollectorRegistry()
    loop = AlertLoop(engine, None, interval=60, metrics=AlertMetrics(registry, clock=lambda: created + 30))
    loop.run_once()  # no Slack configured: nothing is delivered
    assert registry.get_sample_value("vigil_alert_outbox_pending_notifications") == 2.0
    assert registry.get_sample_value("vigil_alert_outbox_oldest_pending_age_seconds") == 30.0
    loop.stop()
    assert registry.get_sample_value("vigil_alert_outbox_pending_notifications") is None
