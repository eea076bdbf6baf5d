"""OTLP/gRPC status codes, details and partial success, per the OTLP specification."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.collector.test_otlp_http import good_and_bad_request, stored_trace_ids
from tests.conftest import RunningVigil
from tests.spans import now_ns, raw_request
from tests.test_self_metrics import scrape
from tests.waiting import wait_until
from vigil.collector.otlp_grpc import GRPC_LIMIT_FACTOR
from vigil.store.client import Client

METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TOO_LARGE_TRACES = (
    "vigil_receiver_rejected_requests_total",
    (("collector", "collector-0"), ("reason", "too_large"), ("signal", "traces")),
)


@pytest.fixture
def export(vigil_server: RunningVigil) -> Iterator[grpc.UnaryUnaryMultiCallable]:
    channel = grpc.insecure_channel(vigil_server.otlp_grpc)
    try:
        yield channel.unary_unary(
            METHOD, request_serializer=lambda body: body, response_deserializer=ExportTraceServiceResponse.FromString
        )
    finally:
        channel.close()


def rpc_error(export: grpc.UnaryUnaryMultiCallable, body: bytes) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        export(body, timeout=10)
    return info.value


def test_a_valid_request_returns_an_empty_response(export: grpc.UnaryUnaryMultiCallable) -> None:
    start = now_ns()
    body = raw_request([{"trace_id": os.urandom(16), "span_id": os.urandom(8), "start": start, "end": start + 1}])
    response = export(body.SerializeToString(), timeout=10)
    assert not response.HasField("partial_success")


def test_an_empty_request_is_a_success(export: grpc.UnaryUnaryMultiCallable) -> None:
    assert export(ExportTraceServiceRequest().SerializeToString(), timeout=10) == ExportTraceServiceResponse()


def test_a_half_valid_request_keeps_the_good_spans_and_reports_partial_success(
    export: grpc.UnaryUnaryMultiCallable, vigil_server: RunningVigil, chdb_client: Client, database: str
) -> None:
    body, good_ids = good_and_bad_request()
    response = export(body, timeout=10)
    assert (response.partial_success.rejected_spans, response.partial_success.error_message) == (
        1,
        "rejected 1 of 3 spans: span 1 (resource 0, scope 0): trace_id must be 16 bytes, got 2",
    )
    assert stored_trace_ids(vigil_server, chdb_client, database) == sorted(good_ids)


def test_garbage_is_invalid_argument_with_bad_request_details(export: grpc.UnaryUnaryMultiCallable) -> None:
    error = rpc_error(export, b"\xff\xff\xff garbage")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(error)
    assert status is not None and status.code == code_pb2.INVALID_ARGUMENT
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert status.message.startswith("body (11 bytes) is not a valid ExportTraceServiceRequest: malformed protobuf")


@pytest.fixture
def small_limits(vigil_settings: dict[str, Any]) -> dict[str, Any]:
    vigil_settings.update(max_grpc_message_bytes=2048, max_batch_rows=1, max_queue_rows=1)
    return vigil_settings


def test_a_message_over_the_limit_is_resource_exhausted_without_retry_info_says_why_and_is_counted(
    small_limits: dict[str, Any], export: grpc.UnaryUnaryMultiCallable, vigil_server: RunningVigil
) -> None:
    error = rpc_error(export, b"\x00" * 3000)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == (
        "message of 3000 bytes is over the limit of 2048 bytes (VIGIL_MAX_GRPC_MESSAGE_BYTES); export smaller "
        "batches (the SDK's max_export_batch_size) or raise the limit"
    )
    status = rpc_status.from_call(error)
    assert status is not None and list(status.details) == []  # no RetryInfo: clients must not retry
    assert scrape(vigil_server.api)[TOO_LARGE_TRACES] == 1.0


def test_a_message_past_grpcio_s_own_limit_is_resource_exhausted_without_retry_info(
    small_limits: dict[str, Any], export: grpc.UnaryUnaryMultiCallable, vigil_server: RunningVigil
) -> None:
    error = rpc_error(export, b"\x00" * (GRPC_LIMIT_FACTOR * 2048 + 1))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rpc_status.from_call(error) is None  # no RetryInfo: clients must not retry
    # grpcio refused it before Vigil could see it (grpc/grpc#27996): the one refusal not counted.
    assert scrape(vigil_server.api)[TOO_LARGE_TRACES] == 0.0


def test_a_full_pipeline_is_resource_exhausted_with_retry_info(
    small_limits: dict[str, Any], export: grpc.UnaryUnaryMultiCallable
) -> None:
    body, _ = good_and_bad_request()
    error = rpc_error(export, body)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(error)
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry)
    assert retry.retry_delay.ToMilliseconds() == 1000


@pytest.fixture
def tiny_wal(vigil_settings: dict[str, Any]) -> dict[str, Any]:
    vigil_settings.update(max_wal_bytes=1024)
    return vigil_settings


def test_a_store_outage_with_a_full_log_is_unavailable_with_retry_info(
    tiny_wal: dict[str, Any],
    export: grpc.UnaryUnaryMultiCallable,
    vigil_server: RunningVigil,
    chdb_client: Client,
    database: str,
) -> None:
    chdb_client.command(f"RENAME TABLE {database}.spans TO {database}.spans_away")
    try:
        first, first_ids = good_and_bad_request()
        export(first, timeout=10)
        inserter = vigil_server.vigil.inserter
        assert inserter is not None
        assert wait_until(lambda: inserter.failing)
        second, _ = good_and_bad_request()
        error = rpc_error(export, second)
    finally:
        chdb_client.command(f"RENAME TABLE {database}.spans_away TO {database}.spans")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    status = rpc_status.from_call(error)
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry)
    assert retry.retry_delay.ToMilliseconds() == 5000
    assert stored_trace_ids(vigil_server, chdb_client, database) == sorted(first_ids)
