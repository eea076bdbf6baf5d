"""End to end: SDK traffic with a latency regression after a deploy becomes one finding, with evidence."""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.conftest import RunningVigil
from vigil.detectors.runner import DetectorRunner
from vigil.detectors.service_regressions import ServiceRegressions, series_key
from vigil.store.client import open_client
from vigil.store.deploys import detected_deploy_id
from vigil.store.findings import FindingQuery, FindingStore

MINUTES = 200
DEPLOY_MINUTE = 160  # version 2.0 starts serving; its eu-west-1 requests of POST /pay are slow
REGIONS = ("eu-west-1", "us-east-1", "ap-south-1")


@dataclass
class Traffic:
    start: float  # unix seconds of minute 0
    slow_trace_ids: set[str] = field(default_factory=set)

    def minute(self, m: int) -> float:
        return self.start + 60 * m

    @property
    def deploy(self) -> float:
        return self.minute(DEPLOY_MINUTE)

    @property
    def end(self) -> float:
        return self.minute(MINUTES)


def _provider(endpoint: str, version: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout", "service.version": version}))
    # A queue for the whole run: the spans of 200 minutes are made in a second or two.
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=16_384, max_export_batch_size=2048))
    return provider


def send_traffic(endpoint: str, start: float) -> Traffic:
    """40 requests a minute to POST /pay and 20 to GET /cart, lognormal latencies; after the
    deploy, POST /pay in eu-west-1 takes five times as long."""
    rng = random.Random(7)
    traffic = Traffic(start)
    providers = {"1.0": _provider(endpoint, "1.0"), "2.0": _provider(endpoint, "2.0")}
    for m in range(MINUTES):
        version = "2.0" if m >= DEPLOY_MINUTE else "1.0"
        tracer = providers[version].get_tracer("shop")
        for operation, count, median_ms in (("POST /pay", 40, 50.0), ("GET /cart", 20, 20.0)):
            for i in range(count):
                region = REGIONS[i % 3]
                ms = median_ms * math.exp(rng.gauss(0, 0.3))
                slow = version == "2.0" and operation == "POST /pay" and region == "eu-west-1"
                if slow:
                    ms *= 5
                begin = int((traffic.minute(m) + rng.uniform(0, 59)) * 1e9)
                span = tracer.start_span(
                    operation,
                    kind=SpanKind.SERVER,
                    start_time=begin,
                    attributes={"cloud.region": region, "http.route": operation.split()[1]},
                )
                if rng.random() < 0.01:
                    span.set_status(Status(StatusCode.ERROR))
                if slow:
                    traffic.slow_trace_ids.add(format(span.get_span_context().trace_id, "032x"))
                span.end(end_time=begin + int(ms * 1e6))
    for provider in providers.values():
        provider.shutdown()
    return traffic


@pytest.fixture
def regression(quiet_vigil: RunningVigil) -> tuple[RunningVigil, Traffic]:
    now = int(time.time()) // 60 * 60
    traffic = send_traffic(quiet_vigil.otlp_grpc, now - 60 * (MINUTES + 5))
    quiet_vigil.flush()
    return quiet_vigil, traffic


def runner(running: RunningVigil, traffic: Traffic, until: float) -> DetectorRunner:
    client = open_client(running.settings.clickhouse_url)
    database = running.settings.clickhouse_database
    return DetectorRunner(
        ServiceRegressions(client, database), FindingStore(client, database), grace=0.0, clock=lambda: until
    )


def findings_by_series(running: RunningVigil) -> dict[str, Any]:
    response = httpx.get(f"{running.api}/api/v1/findings", params={"since": "5h"})
    assert response.status_code == 200
    return {json.dumps([f["service"], f["operation"], f["signal"]], separators=(",", ":")): f for f in response.json()}


def test_a_latency_regression_after_a_deploy_is_found_with_its_evidence(
    regression: tuple[RunningVigil, Traffic],
) -> None:
    running, traffic = regression
    first = runner(running, traffic, traffic.end)
    first.reset(traffic.start)
    first.run()

    findings = findings_by_series(running)
    pay_p95 = findings[series_key("checkout", "POST /pay", "latency_p95")]
    assert pay_p95["kind"] == "service_regression"
    assert pay_p95["status"] == "open"
    # The onset is estimated to the minute: within one minute before the deploy and five after.
    assert traffic.deploy - 60 <= pay_p95["started_at"] <= traffic.deploy + 5 * 60
    assert pay_p95["deploy_id"] == detected_deploy_id("checkout", "2.0")
    assert "Version 2.0 began serving" in pay_p95["summary"]
    assert pay_p95["observed"] > 2 * pay_p95["baseline"]
    assert pay_p95["unit"] == "ms"
    assert pay_p95["exemplar_trace_ids"]
    assert set(pay_p95["exemplar_trace_ids"]) <= traffic.slow_trace_ids
    top = {(a["attribute"], a["value"]): a for a in pay_p95["top_attributes"]}
    region = top[("cloud.region", "eu-west-1")]
    assert region["share"] > 0.75  # slow spans also include the usual slowest 5% of other regions
    assert 0.25 < region["baseline_share"] < 0.45
    assert top[("service.version", "2.0")]["baseline_share"] == 0.0
    # Nothing changed for GET /cart, nor for error rates or throughput.
    assert not [key for key in findings if "GET /cart" in key]
    assert not [f for f in findings.values() if f["signal"] in ("error_rate", "throughput")]


def test_a_restart_mid_stream_neither_duplicates_nor_misses_findings(regression: tuple[RunningVigil, Traffic]) -> None:
    running, traffic = regression
    before_restart = runner(running, traffic, traffic.minute(DEPLOY_MINUTE + 2))
    before_restart.reset(traffic.start)
    before_restart.run()
    runner(running, traffic, traffic.end).run()
    resumed = {
        f.id: f
        for f in FindingStore(open_client(running.settings.clickhouse_url), running.settings.clickhouse_database).query(
            FindingQuery(since=0)
        )
    }

    uninterrupted = runner(running, traffic, traffic.end)
    uninterrupted.reset(traffic.start)
    uninterrupted.run()
    replayed = {
        f.id: f
        for f in FindingStore(open_client(running.settings.clickhouse_url), running.settings.clickhouse_database).query(
            FindingQuery(since=0)
        )
    }

    assert resumed
    assert sorted(resumed) == sorted(replayed)
    assert [(f.started_at, f.status) for f in resumed.values()] == [
        (replayed[i].started_at, replayed[i].status) for i in resumed
    ]
