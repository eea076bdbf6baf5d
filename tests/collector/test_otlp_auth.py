"""With tokens configured, the OTLP receivers take data only from senders holding the ingest
scope: real OpenTelemetry exporters with their `headers` option on gRPC and HTTP."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SpanExportResult
from prometheus_client.parser import text_string_to_metric_families

from tests.auth_tokens import ADMIN, INGEST, READ, TOKENS_SETTING, bearer
from tests.conftest import RunningVigil
from tests.spans import checkout_trace, trace_id_of
from vigil.store.client import Client


@pytest.fixture
def vigil_settings(vigil_settings: dict[str, Any]) -> dict[str, Any]:
    return vigil_settings | {"tokens": TOKENS_SETTING, "detectors_enabled": False}


def stored_traces(vigil: RunningVigil, client: Client, database: str) -> list[str]:
    vigil.flush()
    return [r[0] for r in client.query(f"SELECT DISTINCT TraceId FROM {database}.spans ORDER BY 1").result_rows]


def test_exporters_with_an_ingest_or_admin_token_are_stored(
    vigil_server: RunningVigil, chdb_client: Client, database: str
) -> None:
    over_grpc, over_http = checkout_trace(), checkout_trace()
    grpc_exporter = GrpcSpanExporter(
        endpoint=vigil_server.otlp_grpc, insecure=True, headers={"authorization": f"Bearer {INGEST}"}
    )
    http_exporter = HttpSpanExporter(endpoint=f"{vigil_server.otlp_http}/v1/traces", headers=bearer(ADMIN))
    assert grpc_exporter.export(over_grpc) == SpanExportResult.SUCCESS
    assert http_exporter.export(over_http) == SpanExportResult.SUCCESS
    grpc_exporter.shutdown()
    http_exporter.shutdown()
    assert stored_traces(vigil_server, chdb_client, database) == sorted(
        [trace_id_of(over_grpc), trace_id_of(over_http)]
    )


def test_exporters_without_a_token_or_with_a_read_token_are_refused_and_nothing_is_stored(
    vigil_server: RunningVigil, chdb_client: Client, database: str
) -> None:
    for headers in ({}, bearer(READ)):
        exporter = HttpSpanExporter(endpoint=f"{vigil_server.otlp_http}/v1/traces", headers=headers)
        assert exporter.export(checkout_trace()) == SpanExportResult.FAILURE
        exporter.shutdown()
    assert stored_traces(vigil_server, chdb_client, database) == []
    # Counted for Vigil's own monitoring (which itself needs a read token once tokens exist).
    assert httpx.get(f"{vigil_server.api}/metrics").status_code == 401
    scraped = httpx.get(f"{vigil_server.api}/metrics", headers=bearer(READ)).text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
    }
    key = ("vigil_receiver_unauthorized_requests_total", (("collector", "collector-0"), ("signal", "traces")))
    assert samples[key] == 2.0


@pytest.mark.parametrize(
    ("headers", "status", "code", "message"),
    [
        (
            {},
            401,
            code_pb2.UNAUTHENTICATED,
            "send an API token with the ingest scope as Authorization: Bearer <secret>",
        ),
        (
            bearer("an-unknown-secret-0000"),
            401,
            code_pb2.UNAUTHENTICATED,
            "the bearer token is not known; send an API token with the ingest scope as Authorization: Bearer <secret>",
        ),
        (bearer(READ), 403, code_pb2.PERMISSION_DENIED, "token 'reader' lacks the ingest scope (it has read)"),
    ],
)
def test_otlp_http_refusals_say_what_is_missing_in_an_otlp_status(
    vigil_server: RunningVigil, headers: dict[str, str], status: int, code: int, message: str
) -> None:
    response = httpx.post(
        f"{vigil_server.otlp_http}/v1/logs",
        content=b"not even protobuf",
        headers={"Content-Type": "application/x-protobuf", **headers},
    )
    assert response.status_code == status
    assert status_pb2.Status.FromString(response.content) == status_pb2.Status(code=code, message=message)
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="vigil"'


GRPC_NO_TOKEN = "send an API token with the ingest scope as `authorization: Bearer <secret>` metadata"
GRPC_READ_TOKEN = "token 'reader' lacks the ingest scope (it has read)"


@pytest.mark.parametrize(
    ("metadata", "code", "details"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED, GRPC_NO_TOKEN),
        ((("authorization", f"Bearer {READ}"),), grpc.StatusCode.PERMISSION_DENIED, GRPC_READ_TOKEN),
    ],
)
def test_otlp_grpc_refusals_use_the_grpc_auth_codes(
    vigil_server: RunningVigil, metadata: tuple[tuple[str, str], ...], code: grpc.StatusCode, details: str
) -> None:
    with grpc.insecure_channel(vigil_server.otlp_grpc) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Export(ExportTraceServiceRequest(), metadata=metadata)
    assert (caught.value.code(), caught.value.details()) == (code, details)  # type: ignore[attr-defined]
