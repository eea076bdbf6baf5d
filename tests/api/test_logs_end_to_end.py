"""Logs sent by the real OpenTelemetry SDK exporters come back exactly through the API."""

from __future__ import annotations

import gzip
import logging
import os

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.sdk._logs.export import LogRecordExportResult

from tests.conftest import RunningVigil
from tests.logs import expected_log, export_logging_lines, orders_logs
from tests.spans import now_ns


def send(vigil: RunningVigil, transport: str, service: str = "orders") -> tuple[list[dict[str, object]], str]:
    records, trace_id = orders_logs(service)
    if transport == "grpc":
        exporter: GrpcLogExporter | HttpLogExporter = GrpcLogExporter(endpoint=vigil.otlp_grpc, insecure=True)
    else:
        compression = Compression.Gzip if transport == "http-gzip" else Compression.NoCompression
        exporter = HttpLogExporter(endpoint=f"{vigil.otlp_http}/v1/logs", compression=compression)
    try:
        assert exporter.export(records) == LogRecordExportResult.SUCCESS
    finally:
        exporter.shutdown()
    vigil.flush()
    expected = sorted((expected_log(r) for r in records), key=lambda r: r["time_unix_nano"], reverse=True)
    return expected, trace_id  # type: ignore[return-value]


@pytest.mark.parametrize("transport", ["grpc", "http", "http-gzip"])
def test_sdk_logs_are_stored_and_read_back_exactly_newest_first(vigil_server: RunningVigil, transport: str) -> None:
    expected, _ = send(vigil_server, transport)
    response = httpx.get(f"{vigil_server.api}/api/v1/logs", params={"service": "orders", "since": "5m"})
    assert response.status_code == 200
    assert response.json() == expected


def test_logs_carrying_a_trace_id_are_found_by_it(vigil_server: RunningVigil) -> None:
    expected, trace_id = send(vigil_server, "grpc")
    response = httpx.get(f"{vigil_server.api}/api/v1/logs", params={"trace_id": trace_id.upper()})
    assert response.json() == [log for log in expected if log["trace_id"] == trace_id]
    assert [log["body"] for log in response.json()] == [
        "payment for order A-42 failed: card declined",
        "order A-42 accepted",
    ]


def test_severity_is_a_minimum_by_name_or_number(vigil_server: RunningVigil) -> None:
    send(vigil_server, "http")
    for severity in ("warn", "WARNING", "13"):
        response = httpx.get(f"{vigil_server.api}/api/v1/logs", params={"severity": severity})
        assert [log["severity_text"] for log in response.json()] == ["WARN", "ERROR"], severity


def test_text_search_is_case_insensitive_and_literal(vigil_server: RunningVigil) -> None:
    send(vigil_server, "http")
    bodies = [log["body"] for log in httpx.get(f"{vigil_server.api}/api/v1/logs", params={"q": "ORDER A-42"}).json()]
    assert bodies == ["payment for order A-42 failed: card declined", "order A-42 accepted"]
    percent = httpx.get(f"{vigil_server.api}/api/v1/logs", params={"q": "100%"}).json()
    assert [log["body"] for log in percent] == ["slow query: 100% of budget used"]
    assert httpx.get(f"{vigil_server.api}/api/v1/logs", params={"q": "1_0"}).json() == []


@pytest.mark.parametrize(
    ("params", "loc", "msg"),
    [
        ({"severity": "loud"}, ["query", "severity"],
         "'loud' is not valid for severity: expected trace, debug, info, warn, error, fatal, or a number from 1 to 24"),
        ({"trace_id": "xyz"}, ["query", "trace_id"],
         "'xyz' is not valid for trace_id: expected 32 hexadecimal characters"),
        ({"since": "soon"}, ["query", "since"],
         "'soon' is not valid for since: expected a duration such as 15m, 1h or 7d"),
    ],
)  # fmt: skip
def test_bad_log_query_parameters_get_a_422_naming_the_parameter(
    vigil_server: RunningVigil, params: dict[str, str], loc: list[str], msg: str
) -> None:
    response = httpx.get(f"{vigil_server.api}/api/v1/logs", params=params)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert (error["loc"], error["msg"]) == (loc, msg)


def half_valid_logs_request() -> bytes:
    request = ExportLogsServiceRequest()
    scope_logs = request.resource_logs.add().scope_logs.add()
    now = now_ns()
    good = scope_logs.log_records.add(time_unix_nano=now, severity_number=9)
    good.body.string_value = "fine"
    bad = scope_logs.log_records.add(time_unix_nano=now, trace_id=os.urandom(3))
    bad.body.string_value = "bad trace id"
    return request.SerializeToString()


def test_a_half_valid_logs_request_keeps_the_good_records_and_reports_partial_success(
    vigil_server: RunningVigil,
) -> None:
    response = httpx.post(
        f"{vigil_server.otlp_http}/v1/logs",
        content=gzip.compress(half_valid_logs_request()),
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200
    partial = ExportLogsServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_log_records == 1
    assert partial.error_message.startswith("rejected 1 of 2 log records: record 1 (resource 0, scope 0): trace_id")
    vigil_server.flush()
    logs = httpx.get(f"{vigil_server.api}/api/v1/logs").json()
    assert [(log["body"], log["service"], log["severity_number"]) for log in logs] == [("fine", "unknown_service", 9)]


def test_log_records_are_grouped_into_patterns_with_counts_severity_and_first_seen(vigil_server: RunningVigil) -> None:
    service = "patterns-" + os.urandom(4).hex()
    lines = [(logging.INFO, "user %d logged in from %s", (1000 + i, f"10.0.{i}.7")) for i in range(30)]
    lines += [(logging.WARNING, "disk %s is %d%% full", (f"/dev/sd{'abcde'[i]}1", 90 + i)) for i in range(5)]
    lines += [(logging.ERROR, "payment %s failed: card declined", (f"P_{i}",)) for i in range(2)]
    export_logging_lines(vigil_server.otlp_http, service, lines)
    vigil_server.flush()

    response = httpx.get(f"{vigil_server.api}/api/v1/logs/patterns", params={"service": service, "since": "5m"})
    assert response.status_code == 200
    patterns = response.json()
    assert [(p["template"], p["count"], p["warnings"], p["errors"], p["severity_max"], p["new"]) for p in patterns] == [
        ("user <NUM> logged in from <IP>", 30, 0, 0, "INFO", True),
        ("disk <PATH> is <NUM>% full", 5, 5, 0, "WARN", True),
        ("payment <ID> failed: card declined", 2, 0, 2, "ERROR", True),
    ]
    disk = patterns[1]
    assert disk["sample"] in {f"disk /dev/sd{c}1 is {90 + i}% full" for i, c in enumerate("abcde")}
    assert disk["first_seen"] <= disk["last_seen"]
    assert {p["service"] for p in patterns} == {service}

    # Every record of one pattern, by its id.
    records = httpx.get(
        f"{vigil_server.api}/api/v1/logs", params={"template_id": disk["template_id"], "since": "5m"}
    ).json()
    assert sorted(r["body"] for r in records) == sorted(
        f"disk /dev/sd{c}1 is {90 + i}% full" for i, c in enumerate("abcde")
    )
    assert {r["template"] for r in records} == {"disk <PATH> is <NUM>% full"}
