"""End to end: SDK log records over two and a half hours become log pattern findings with evidence."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from tests.conftest import RunningVigil
from vigil.detectors.log_patterns import LogPatterns
from vigil.detectors.runner import DetectorRunner
from vigil.store.client import open_client
from vigil.store.findings import FindingStore

MINUTES = 150
OUTAGE_MINUTE = 100  # the database refuses connections for ten minutes: a new ERROR pattern
HEARTBEAT_STOPS = 120  # the worker's heartbeat is not logged any more
SPIKE_MINUTE = 130  # three minutes of a request log flood


@dataclass
class History:
    start: float
    refused_trace_ids: set[str] = field(default_factory=set)

    def minute(self, m: int) -> float:
        return self.start + 60 * m

    @property
    def end(self) -> float:
        return self.minute(MINUTES)


def send_history(endpoint: str, start: float) -> History:
    rng = random.Random(11)
    history = History(start)
    provider = LoggerProvider(resource=Resource.create({"service.name": "billing", "service.version": "4.1"}))
    exporter = OTLPLogExporter(endpoint=endpoint, insecure=True)
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter, max_queue_size=32_768, max_export_batch_size=4096)
    )
    logger = provider.get_logger("billing")

    def emit(m: int, severity: SeverityNumber, body: str, trace_id: int | None = None) -> None:
        at = int((history.minute(m) + rng.uniform(0, 59)) * 1e9)
        logger.emit(
            LogRecord(
                timestamp=at,
                observed_timestamp=at,
                severity_number=severity,
                severity_text=severity.name,
                body=body,
                trace_id=trace_id,
                span_id=rng.getrandbits(64) if trace_id else None,
            )
        )

    for m in range(MINUTES):
        if m < HEARTBEAT_STOPS:
            for worker in range(10):
                emit(m, SeverityNumber.INFO, f"heartbeat from worker {worker} queue depth {rng.randrange(50)}")
        requests = 300 if SPIKE_MINUTE <= m < SPIKE_MINUTE + 3 else 30 + rng.randrange(-5, 6)
        for _ in range(requests):
            emit(m, SeverityNumber.INFO, f"request a{rng.getrandbits(28):07x} served in {rng.randrange(5, 90)} ms")
        if rng.random() < 0.2:
            emit(m, SeverityNumber.WARN, f"slow disk sync took {rng.randrange(200, 900)} ms")
        if OUTAGE_MINUTE <= m < OUTAGE_MINUTE + 10:
            for _ in range(20):
                trace_id = rng.getrandbits(128)
                history.refused_trace_ids.add(format(trace_id, "032x"))
                emit(
                    m,
                    SeverityNumber.ERROR,
                    f"connection to db-{rng.randrange(3)} refused after {rng.randrange(1, 5)} retries",
                    trace_id,
                )
    provider.shutdown()
    return history


@pytest.fixture
def history(quiet_vigil: RunningVigil) -> tuple[RunningVigil, History]:
    now = int(time.time()) // 60 * 60
    history = send_history(quiet_vigil.otlp_grpc, now - 60 * (MINUTES + 5))
    quiet_vigil.flush()
    return quiet_vigil, history


def run_detectors(running: RunningVigil, start: float, until: float) -> None:
    client = open_client(running.settings.clickhouse_url)
    database = running.settings.clickhouse_database
    runner = DetectorRunner(
        LogPatterns(client, database), FindingStore(client, database), grace=0.0, clock=lambda: until
    )
    runner.reset(start)
    runner.run()


def findings(running: RunningVigil) -> list[dict[str, Any]]:
    response = httpx.get(f"{running.api}/api/v1/findings", params={"since": "5h", "kind": "log_pattern"})
    assert response.status_code == 200
    return sorted(response.json(), key=lambda f: (f["started_at"], f["signal"]))


def test_a_new_error_pattern_an_error_burst_a_vanished_heartbeat_and_a_flood_are_each_one_finding(
    history: tuple[RunningVigil, History],
) -> None:
    running, traffic = history
    run_detectors(running, traffic.start, traffic.end)
    found = findings(running)

    assert [(f["signal"], f["operation"], f["status"]) for f in found] == [
        ("error_logs", "", "closed"),
        ("new_pattern", "connection to db-<NUM> refused after <NUM> retries", "closed"),
        ("pattern_rate", "heartbeat from worker <NUM> queue depth <NUM>", "open"),
        ("pattern_rate", "request <HEX> served in <NUM> ms", "closed"),
    ]
    burst, new, vanished, flood = found
    assert {f["service"] for f in found} == {"billing"}
    assert {f["kind"] for f in found} == {"log_pattern"}

    assert new["started_at"] == traffic.minute(OUTAGE_MINUTE)
    assert new["ended_at"] == traffic.minute(OUTAGE_MINUTE + 10 + 14)  # closed after 15 quiet minutes
    assert new["observed"] == 200  # every refused line of the outage
    assert new["summary"] == (
        "New log pattern in billing «connection to db-<NUM> refused after <NUM> retries»: "
        "first logged at ERROR (200 lines so far)."
    )
    assert len(new["exemplar_trace_ids"]) == 5
    assert set(new["exemplar_trace_ids"]) <= traffic.refused_trace_ids

    assert traffic.minute(OUTAGE_MINUTE) <= burst["started_at"] <= traffic.minute(OUTAGE_MINUTE + 2)
    assert burst["summary"].startswith("Error log burst in billing: Error rate rose to ")
    assert set(burst["exemplar_trace_ids"]) <= traffic.refused_trace_ids and burst["exemplar_trace_ids"]

    assert vanished["started_at"] == traffic.minute(HEARTBEAT_STOPS)
    assert vanished["observed"] == 0 and 9.0 < vanished["baseline"] < 11.0

    assert flood["started_at"] == traffic.minute(SPIKE_MINUTE)
    assert flood["observed"] == 300


def test_patterns_api_counts_the_history(history: tuple[RunningVigil, History]) -> None:
    running, traffic = history
    response = httpx.get(f"{running.api}/api/v1/logs/patterns", params={"service": "billing", "since": "3h"})
    by_template = {p["template"]: p for p in response.json()}
    refused = by_template["connection to db-<NUM> refused after <NUM> retries"]
    assert (refused["count"], refused["errors"], refused["severity_max"]) == (200, 200, "ERROR")
    assert refused["first_seen"] >= traffic.minute(OUTAGE_MINUTE)
    assert by_template["heartbeat from worker <NUM> queue depth <NUM>"]["count"] == 10 * HEARTBEAT_STOPS
