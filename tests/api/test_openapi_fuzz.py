"""Every API operation, fuzzed by schemathesis against a running Vigil on real chDB.

Generated requests, valid and invalid, must never make a route answer 500, and every answer must
have a status code, media type and body the OpenAPI document declares. Writing routes (PUT, POST,
DELETE) are fuzzed too; they write into this module's own database.

The operations are collected from the document the app builds (it does not depend on the store),
so each is its own test; `test_the_fuzzed_document_is_the_one_vigil_serves` keeps that document
equal to the /openapi.json the running Vigil serves. One Vigil, seeded with a trace, logs, a
deploy and an SLO, serves them all. schemathesis's `from_fixture` would load the document from
that Vigil instead, but it fails under pytest 9 (it reads `Node._nodeid`, which pytest 9 removed).

Settings are derandomized, so a run is the same every time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace.export import SpanExportResult
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import RunningVigil, start_vigil, stop_vigil
from tests.logs import orders_logs
from tests.spans import checkout_trace
from vigil.server import build_web_app
from vigil.settings import load_settings
from vigil.store.read import StoreReader

# Building the document touches no table, so the app needs no open store here.
DOCUMENT: dict[str, Any] = build_web_app(load_settings(), StoreReader(client=None, database="")).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed_vigil(chdb_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningVigil]:
    """One quiet Vigil (no detector threads) for every operation: starting one per operation would
    cost more than the fuzzing."""
    wal: Path = tmp_path_factory.mktemp("fuzz-wal")
    running, thread = start_vigil(
        load_settings(
            clickhouse_url=chdb_url,
            clickhouse_database=f"t_{uuid.uuid4().hex[:12]}",
            http_port=0,
            otlp_http_port=0,
            otlp_grpc_port=0,
            statsd_port=0,
            netflow_port=0,
            ipfix_port=0,
            collector_processes=0,
            wal_dir=str(wal),
            detectors_enabled=False,
        )
    )
    try:
        seed(running)
        yield running
    finally:
        stop_vigil(running, thread)


def seed(vigil: RunningVigil) -> None:
    """A trace, logs, a deploy and an SLO, so reading routes return rows, not only empty lists."""
    spans = HttpSpanExporter(endpoint=f"{vigil.otlp_http}/v1/traces")
    logs = HttpLogExporter(endpoint=f"{vigil.otlp_http}/v1/logs")
    try:
        assert spans.export(checkout_trace()) == SpanExportResult.SUCCESS
        assert logs.export(orders_logs()[0]) == LogRecordExportResult.SUCCESS
    finally:
        spans.shutdown()
        logs.shutdown()
    deploy = httpx.post(f"{vigil.api}/api/v1/deploys", json={"service": "shop", "version": "2.1.0"})
    slo = httpx.put(f"{vigil.api}/api/v1/slos/shop-availability", json={"service": "shop", "objective": 99.9})
    assert (deploy.status_code, slo.status_code) == (201, 200)
    vigil.flush()


def test_the_fuzzed_document_is_the_one_vigil_serves(fuzzed_vigil: RunningVigil) -> None:
    served = httpx.get(f"{fuzzed_vigil.api}/openapi.json")
    assert served.status_code == 200
    assert served.json() == DOCUMENT


def test_the_errors_routes_answer_are_declared() -> None:
    """Beside FastAPI's 422: 404 for ids and names not found, 400 for a body that is not UTF-8
    (FastAPI's own answer), 503 when ClickHouse is down. Schemathesis found each undeclared."""
    declared = {
        (method.upper(), path): sorted(operation["responses"])
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if not path.startswith("/api/v1/traces")
    }
    assert declared == {
        ("GET", "/healthz"): ["200"],
        ("GET", "/readyz"): ["200", "503"],
        ("GET", "/api/v1/services"): ["200", "422"],
        ("GET", "/api/v1/logs"): ["200", "422"],
        ("GET", "/api/v1/logs/patterns"): ["200", "422"],
        ("GET", "/api/v1/metrics"): ["200", "422"],
        ("GET", "/api/v1/metrics/query"): ["200", "422"],
        ("GET", "/api/v1/network/top-talkers"): ["200", "422"],
        ("GET", "/api/v1/network/throughput"): ["200", "422"],
        ("GET", "/api/v1/network/health"): ["200", "422"],
        ("GET", "/api/v1/findings"): ["200", "422"],
        ("GET", "/api/v1/findings/{finding_id}"): ["200", "404", "422"],
        ("POST", "/api/v1/deploys"): ["201", "400", "422"],
        ("GET", "/api/v1/deploys"): ["200", "422"],
        ("GET", "/api/v1/deploys/{deploy_id}"): ["200", "404", "422"],
        ("POST", "/api/v1/canary/analyses"): ["201", "400", "422"],
        ("GET", "/api/v1/canary/analyses"): ["200", "422"],
        ("GET", "/api/v1/canary/analyses/{analysis_id}"): ["200", "404", "422"],
        ("GET", "/api/v1/slos"): ["200"],
        ("GET", "/api/v1/slos/{name}"): ["200", "404", "422"],
        ("PUT", "/api/v1/slos/{name}"): ["200", "400", "422"],
        ("DELETE", "/api/v1/slos/{name}"): ["204", "404", "422"],
        ("GET", "/api/v1/alerts"): ["200", "422"],
        ("GET", "/api/v1/alert-rules"): ["200"],
        ("PUT", "/api/v1/alert-rules"): ["200", "400", "422"],
        ("GET", "/api/v1/silences"): ["200"],
        ("POST", "/api/v1/silences"): ["201", "400", "422"],
        ("DELETE", "/api/v1/silences/{silence_id}"): ["204", "404", "422"],
    }


def test_a_body_that_is_not_utf8_is_the_declared_400(fuzzed_vigil: RunningVigil) -> None:
    response = httpx.post(
        f"{fuzzed_vigil.api}/api/v1/silences", content=b"\xc3\x28", headers={"content-type": "application/json"}
    )
    assert (response.status_code, response.json()) == (400, {"detail": "There was an error parsing the body"})


FUZZ_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    # One Vigil serves every operation, on purpose (see `fuzzed_vigil`); chDB answers vary in speed.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)


@schema.parametrize()
@FUZZ_SETTINGS
def test_no_generated_request_fails_a_route_or_breaks_its_schema(
    case: schemathesis.Case, fuzzed_vigil: RunningVigil
) -> None:
    case.call_and_validate(base_url=fuzzed_vigil.api, checks=CHECKS)
