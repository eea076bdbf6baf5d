"""OTLP/HTTP status codes and bodies, per the OTLP specification."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.conftest import RunningVigil
from tests.spans import now_ns, raw_request
from tests.waiting import wait_until
from vigil.store.client import Client

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def good_and_bad_request() -> tuple[bytes, list[str]]:
    start = now_ns() - 1_000_000_000
    good = [
        {"trace_id": os.urandom(16), "span_id": os.urandom(8), "start": start, "end": start + 1000} for _ in range(2)
    ]
    bad = {"trace_id": b"\x01\x02", "span_id": os.urandom(8), "start": start, "end": start + 1000}
    request = raw_request([good[0], bad, good[1]])
    return request.SerializeToString(), [g["trace_id"].hex() for g in good]


def stored_trace_ids(vigil: RunningVigil, client: Client, database: str) -> list[str]:
    vigil.flush()
    rows = client.query(f"SELECT TraceId FROM {database}.spans ORDER BY TraceId").result_rows
    return [r[0] for r in rows]


def test_a_valid_protobuf_request_gets_200_with_an_empty_response(vigil_server: RunningVigil) -> None:
    start = now_ns()
    body = raw_request([{"trace_id": os.urandom(16), "span_id": os.urandom(8), "start": start, "end": start + 5}])
    response = httpx.post(f"{vigil_server.otlp_http}/v1/traces", content=body.SerializeToString(), headers=PROTOBUF)
    assert (response.status_code, response.headers["content-type"]) == (200, "application/x-protobuf")
    parsed = ExportTraceServiceResponse.FromString(response.content)
    assert not parsed.HasField("partial_success")


def test_a_half_valid_body_keeps_the_good_spans_and_reports_partial_success(
    vigil_server: RunningVigil, chdb_client: Client, database: str
) -> None:
    body, good_ids = good_and_bad_request()
    response = httpx.post(f"{vigil_server.otlp_http}/v1/traces", content=body, headers=PROTOBUF)
    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 1
    assert partial.error_message == (
        "rejected 1 of 3 spans: span 1 (resource 0, scope 0): trace_id must be 16 bytes, got 2"
    )
    assert stored_trace_ids(vigil_server, chdb_client, database) == sorted(good_ids)


def test_json_requests_get_json_responses(vigil_server: RunningVigil, chdb_client: Client, database: str) -> None:
    start = now_ns()
    request = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
                             "name": "op", "kind": 2, "startTimeUnixNano": str(start), "endTimeUnixNano": start + 7},
                            {"traceId": "zz", "spanId": "eee19b7ec3c1b174", "name": "bad",
                             "startTimeUnixNano": str(start), "endTimeUnixNano": str(start)},
                        ]
                    }
                ],
            }
        ]
    }  # fmt: skip
    response = httpx.post(f"{vigil_server.otlp_http}/v1/traces", json=request)
    assert (response.status_code, response.headers["content-type"]) == (200, "application/json")
    body = response.json()
    assert body["partialSuccess"]["rejectedSpans"] == "1"
    assert stored_trace_ids(vigil_server, chdb_client, database) == ["5b8efff798038103d269b633813fc60c"]


def test_a_gzip_body_is_accepted(vigil_server: RunningVigil, chdb_client: Client, database: str) -> None:
    body, good_ids = good_and_bad_request()
    response = httpx.post(
        f"{vigil_server.otlp_http}/v1/traces",
        content=gzip.compress(body),
        headers={**PROTOBUF, "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert stored_trace_ids(vigil_server, chdb_client, database) == sorted(good_ids)


def test_a_chunked_body_without_content_length_is_read_whole(
    vigil_server: RunningVigil, chdb_client: Client, database: str
) -> None:
    body, good_ids = good_and_bad_request()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 7):
            yield body[i : i + 7]

    response = httpx.post(f"{vigil_server.otlp_http}/v1/traces", content=chunks(), headers=PROTOBUF)
    assert response.status_code == 200
    assert stored_trace_ids(vigil_server, chdb_client, database) == sorted(good_ids)


def status_of(response: httpx.Response) -> status_pb2.Status:
    if response.headers["content-type"] == "application/json":
        return json_format.Parse(response.text, status_pb2.Status())
    return status_pb2.Status.FromString(response.content)


def test_an_undecodable_protobuf_body_is_a_400_with_a_bad_request_status(vigil_server: RunningVigil) -> None:
    response = httpx.post(f"{vigil_server.otlp_http}/v1/traces", content=b"\xff\xff\xff garbage", headers=PROTOBUF)
    assert response.status_code == 400
    status = status_of(response)
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert status.message.startswith("body (11 bytes) is not a valid ExportTraceServiceRequest: malformed protobuf")
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].description == status.message


def test_json_that_is_not_an_object_is_a_400_in_json(vigil_server: RunningVigil) -> None:
    response = httpx.post(
        f"{vigil_server.otlp_http}/v1/traces", content=b"[1, 2]", headers={"Content-Type": "application/json"}
    )
    assert (response.status_code, response.headers["content-type"]) == (400, "application/json")
    assert json.loads(response.text)["code"] == code_pb2.INVALID_ARGUMENT


def test_an_unknown_media_type_is_a_415_naming_the_accepted_ones(vigil_server: RunningVigil) -> None:
    response = httpx.post(f"{vigil_server.otlp_http}/v1/traces", content=b"x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert status_of(response).message == (
        "Content-Type 'text/plain' is not supported; send application/x-protobuf or application/json"
    )


def test_an_unknown_content_encoding_is_a_415(vigil_server: RunningVigil) -> None:
    response = httpx.post(
        f"{vigil_server.otlp_http}/v1/traces", content=b"x", headers={**PROTOBUF, "Content-Encoding": "br"}
    )
    assert response.status_code == 415
    assert status_of(response).message == ("Content-Encoding 'br' is not supported; send gzip, deflate or no encoding")


@pytest.fixture
def small_limits(vigil_settings: dict[str, Any]) -> dict[str, Any]:
    vigil_settings.update(max_request_bytes=4096, max_batch_rows=1, max_queue_rows=1)
    return vigil_settings


def test_a_body_over_the_limit_is_a_413(small_limits: dict[str, Any], vigil_server: RunningVigil) -> None:
    response = httpx.post(f"{vigil_server.otlp_http}/v1/traces", content=b"\x00" * 200_000, headers=PROTOBUF)
    assert response.status_code == 413
    assert status_of(response).message == (
        "request body is 200000 bytes, over the limit of 4096 bytes after decompression; send smaller batches "
        "(e.g. OTEL_BSP_MAX_EXPORT_BATCH_SIZE) or raise VIGIL_MAX_REQUEST_BYTES"
    )


def test_a_gzip_body_inflating_past_the_limit_is_a_413(
    small_limits: dict[str, Any], vigil_server: RunningVigil
) -> None:
    bomb = gzip.compress(b"\x00" * 1_000_000)
    response = httpx.post(
        f"{vigil_server.otlp_http}/v1/traces", content=bomb, headers={**PROTOBUF, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 413
    assert status_of(response).message.startswith(
        "request body inflates past the limit of 4096 bytes after decompression"
    )


def test_a_full_pipeline_is_a_429_with_retry_after(small_limits: dict[str, Any], vigil_server: RunningVigil) -> None:
    body, _ = good_and_bad_request()  # two good spans: more than the one-row queue holds
    response = httpx.post(f"{vigil_server.otlp_http}/v1/traces", content=body, headers=PROTOBUF)
    assert (response.status_code, response.headers["retry-after"]) == (429, "1")
    assert status_of(response).code == code_pb2.RESOURCE_EXHAUSTED


@pytest.fixture
def tiny_wal(vigil_settings: dict[str, Any]) -> dict[str, Any]:
    vigil_settings.update(max_wal_bytes=1024)
    return vigil_settings


def test_acknowledged_spans_survive_a_store_outage_and_a_full_log_answers_503(
    tiny_wal: dict[str, Any], vigil_server: RunningVigil, chdb_client: Client, database: str
) -> None:
    chdb_client.command(f"RENAME TABLE {database}.spans TO {database}.spans_away")
    first, first_ids = good_and_bad_request()
    # Acknowledged once durable in the write-ahead log, although ClickHouse cannot take it.
    assert httpx.post(f"{vigil_server.otlp_http}/v1/traces", content=first, headers=PROTOBUF).status_code == 200
    inserter = vigil_server.vigil.inserter
    assert inserter is not None
    assert wait_until(lambda: inserter.failing)

    second, _ = good_and_bad_request()
    response = httpx.post(f"{vigil_server.otlp_http}/v1/traces", content=second, headers=PROTOBUF)
    assert (response.status_code, response.headers["retry-after"]) == (503, "5")
    status = status_of(response)
    assert status.code == code_pb2.UNAVAILABLE
    assert status.message == (
        "ClickHouse has been unavailable and the write-ahead log is full (1024 bytes); retry later"
    )

    chdb_client.command(f"RENAME TABLE {database}.spans_away TO {database}.spans")
    assert stored_trace_ids(vigil_server, chdb_client, database) == sorted(first_ids)
