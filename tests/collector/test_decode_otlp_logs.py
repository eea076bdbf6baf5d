"""Decoding OTLP log requests (protobuf and JSON) into rows of the logs table."""

from __future__ import annotations

import base64
import json
import logging
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from tests.collector.otlp_values import SPAN, TRACE, kvs, otlp_json, ts, val
from vigil.collector.decode.otlp_logs import decode_logs_json, decode_logs_protobuf
from vigil.errors import DecodeError
from vigil.store.schema import LOGS_ARROW_SCHEMA
from vigil.types import DecodeResult

T0 = 1_700_000_000_000_000_000


# ---- building requests and expected rows -------------------------------------------------------


def record(**fields: Any) -> LogRecord:
    """A valid record (event and observed time, a string body), with `fields` set on top; body=None unsets it."""
    base: dict[str, Any] = {"time_unix_nano": T0, "observed_time_unix_nano": T0 + 5, "body": "started"}
    merged = base | fields
    body = merged.pop("body")
    attrs = merged.pop("attributes", {})
    return LogRecord(**merged, attributes=kvs(attrs), body=None if body is None else val(body))


def request(
    *records: LogRecord, resource: dict[str, object] | None = None, scope: tuple[str, str] = ("", "")
) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(kvs({"service.name": "checkout"} if resource is None else resource))
    sl = rl.scope_logs.add()
    sl.scope.name, sl.scope.version = scope
    sl.log_records.extend(records)
    return req


def row(**columns: object) -> dict[str, object]:
    """The expected row of `record()` in `request()`, with `columns` on top."""
    base: dict[str, object] = {
        "Timestamp": ts(T0),
        "ObservedTimestamp": ts(T0 + 5),
        "TraceId": "",
        "SpanId": "",
        "TraceFlags": 0,
        "SeverityText": "",
        "SeverityNumber": 0,
        "ServiceName": "checkout",
        "ServiceVersion": "",
        "Body": "started",
        "BodyType": "",
        "EventName": "",
        "ResourceAttributes": [("service.name", "checkout")],
        "ResourceAttributeTypes": [],
        "ScopeName": "",
        "ScopeVersion": "",
        "LogAttributes": [],
        "LogAttributeTypes": [],
    }
    assert set(columns) <= set(base), set(columns) - set(base)
    return base | columns


def rows(result: DecodeResult) -> list[dict[str, object]]:
    assert result.batches[0].table == "logs"
    assert result.batches[0].rows.schema.equals(LOGS_ARROW_SCHEMA)
    return result.batches[0].rows.to_pylist()  # type: ignore[no-any-return]


def both(req: ExportLogsServiceRequest) -> list[dict[str, object]]:
    """The rows of `req` by the protobuf path, checked to be those of the OTLP/JSON path too."""
    got = rows(decode_logs_protobuf(req.SerializeToString()))
    assert rows(decode_logs_json(otlp_json(req))) == got
    return got


# ---- protobuf --------------------------------------------------------------------------------

EVERY_TYPE: list[tuple[str, object]] = [
    ("s", "héllo"),
    ("i", -(2**63)),
    ("d", 1.5),
    ("inf", math.inf),
    ("t", True),
    ("b", b"\x00\xffhi"),
    ("arr", ["a", 1, None, {"k": "v"}]),
    ("kv", {"a": 1, "b": ["c"]}),
    ("none", None),
]
EVERY_TYPE_TEXTS = [
    ("s", "héllo"),
    ("i", "-9223372036854775808"),
    ("d", "1.5"),
    ("inf", "inf"),
    ("t", "true"),
    ("b", "AP9oaQ=="),
    ("arr", '["a",1,null,{"k":"v"}]'),
    ("kv", '{"a":1,"b":["c"]}'),
    ("none", ""),
]
EVERY_TYPE_TYPES = [
    ("i", "int"),
    ("d", "double"),
    ("inf", "double"),
    ("t", "bool"),
    ("b", "bytes"),
    ("arr", "array"),
    ("kv", "kvlist"),
    ("none", "empty"),
]


def full_request() -> ExportLogsServiceRequest:
    """One record that sets everything, under a resource and scope that set everything."""
    rec = record(
        trace_id=TRACE,
        span_id=SPAN,
        flags=0x1_0301,  # only the low byte is the W3C trace flags
        severity_number=17,
        severity_text="ERROR",
        body={"msg": "payment failed", "code": 402},
        attributes=EVERY_TYPE,
        event_name="payment.failed",
        dropped_attributes_count=2,
    )
    return request(
        rec,
        resource={"service.name": "checkout", "service.version": "1.4.2", "host.cpus": 8},
        scope=("io.opentelemetry.flask", "0.45b0"),
    )


FULL_ROW = row(
    TraceId=TRACE.hex(),
    SpanId=SPAN.hex(),
    TraceFlags=1,
    SeverityText="ERROR",
    SeverityNumber=17,
    ServiceVersion="1.4.2",
    Body='{"msg":"payment failed","code":402}',
    BodyType="kvlist",
    EventName="payment.failed",
    ResourceAttributes=[("service.name", "checkout"), ("service.version", "1.4.2"), ("host.cpus", "8")],
    ResourceAttributeTypes=[("host.cpus", "int")],
    ScopeName="io.opentelemetry.flask",
    ScopeVersion="0.45b0",
    LogAttributes=EVERY_TYPE_TEXTS,
    LogAttributeTypes=EVERY_TYPE_TYPES,
)


def test_the_installed_log_record_has_event_name_as_field_12() -> None:
    assert LogRecord.DESCRIPTOR.fields_by_name["event_name"].number == 12


def test_a_record_that_sets_every_field_decodes_to_the_exact_row() -> None:
    result = decode_logs_protobuf(full_request().SerializeToString())

    assert (result.rejected, result.error_message) == (0, "")
    assert rows(result) == [FULL_ROW]


@pytest.mark.parametrize(
    ("body", "text", "body_type"),
    [
        ("a log line", "a log line", ""),
        ("", "", ""),
        ("é" * 100, "é" * 100, ""),  # a 2-byte length
        ("x" * 20_000, "x" * 20_000, ""),  # a 3-byte length
        (42, "42", "int"),
        (-1.25, "-1.25", "double"),
        (2.0, "2.0", "double"),
        (False, "false", "bool"),
        (b"\x01\x02", "AQI=", "bytes"),
        (["a", 1, True], '["a",1,true]', "array"),
        ({"k": [1.5, None]}, '{"k":[1.5,null]}', "kvlist"),
        (None, "", "empty"),
    ],
)
def test_each_body_type_reads_as_text_with_its_type_name_and_strings_have_none(
    body: object, text: str, body_type: str
) -> None:
    assert both(request(record(body=body))) == [row(Body=text, BodyType=body_type)]


def test_a_record_without_event_time_is_stamped_with_its_observed_time() -> None:
    assert both(request(record(time_unix_nano=0))) == [row(Timestamp=ts(T0 + 5))]


def test_a_record_without_observed_time_gets_its_event_time_as_observed() -> None:
    assert both(request(record(observed_time_unix_nano=0))) == [row(ObservedTimestamp=ts(T0))]


def test_absent_and_all_zero_ids_read_as_empty_text() -> None:
    req = request(record(), record(trace_id=bytes(16), span_id=bytes(8)), record(trace_id=TRACE))

    assert both(req) == [row(), row(), row(TraceId=TRACE.hex())]


@pytest.mark.parametrize(("flags", "trace_flags"), [(0, 0), (1, 1), (0xFF, 0xFF), (0x100, 0), (2**32 - 1, 0xFF)])
def test_trace_flags_are_the_low_byte_of_flags(flags: int, trace_flags: int) -> None:
    assert both(request(record(flags=flags))) == [row(TraceFlags=trace_flags)]


@pytest.mark.parametrize("number", [0, 1, 9, 13, 24])
def test_severity_text_and_number_are_kept_as_sent(number: int) -> None:
    req = request(record(severity_number=number, severity_text="anything"))

    assert both(req) == [row(SeverityNumber=number, SeverityText="anything")]


def test_a_resource_without_service_name_is_unknown_service() -> None:
    req = request(record(), resource={"host.name": "a"})

    assert both(req) == [row(ServiceName="unknown_service", ResourceAttributes=[("host.name", "a")])]


def test_string_only_attributes_leave_the_type_map_empty_and_keep_duplicates_in_order() -> None:
    attrs = [("b", "1"), ("a", "2"), ("b", "3")]

    assert both(request(record(attributes=attrs))) == [row(LogAttributes=attrs)]


def test_records_under_several_resources_and_scopes_get_their_own_resource_and_scope() -> None:
    req = request(record(body="1"), resource={"service.name": "a"}, scope=("s1", "1"))
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(kvs({"service.name": 7, "service.version": "2"}))
    rl.scope_logs.add().scope.name = "empty"
    sl = rl.scope_logs.add()
    sl.scope.name = "s2"
    sl.log_records.extend([record(body="2"), record(body="3")])
    other: dict[str, object] = {"ServiceName": "7", "ServiceVersion": "2", "ScopeName": "s2"}
    other |= {"ResourceAttributes": [("service.name", "7"), ("service.version", "2")]}
    other |= {"ResourceAttributeTypes": [("service.name", "int")]}

    assert both(req) == [
        row(Body="1", ServiceName="a", ResourceAttributes=[("service.name", "a")], ScopeName="s1", ScopeVersion="1"),
        row(Body="2", **other),
        row(Body="3", **other),
    ]


def test_invalid_records_are_rejected_and_counted_and_the_valid_ones_kept() -> None:
    req = request(
        record(body="kept"),
        record(time_unix_nano=0, observed_time_unix_nano=0),
        record(trace_id=TRACE.hex().encode()),
        record(span_id=b"\x01" * 3),
        record(severity_number=25),
        record(severity_number=-1),
        record(time_unix_nano=2**63),
    )

    result = decode_logs_protobuf(req.SerializeToString())

    assert rows(result) == [row(Body="kept")]
    assert result.rejected == 6
    assert result.error_message == (
        "rejected 6 of 7 log records: "
        "record 1 (resource 0, scope 0): time_unix_nano and observed_time_unix_nano are both 0; "
        "record 2 (resource 0, scope 0): trace_id must be 16 bytes, got 32 (hex text? send the raw bytes); "
        "record 3 (resource 0, scope 0): span_id must be 8 bytes, got 3; "
        "record 4 (resource 0, scope 0): severity_number 25 is out of range (0 to 24); "
        "record 5 (resource 0, scope 0): severity_number -1 is out of range (0 to 24); "
        "and more"
    )


def test_a_far_future_time_is_rejected_naming_the_field() -> None:
    result = decode_logs_protobuf(request(record(), record(observed_time_unix_nano=2**64 - 1)).SerializeToString())

    assert (rows(result), result.rejected) == ([row()], 1)
    assert result.error_message == (
        "rejected 1 of 2 log records: record 1 (resource 0, scope 0): observed_time_unix_nano "
        "18446744073709551615 is after the year 2262 (nanoseconds since the Unix epoch expected)"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"\x0a\x05\x12\x03",
            "body (4 bytes) is not a valid ExportLogsServiceRequest: malformed protobuf (Wire format",
        ),
        (b'{"resourceLogs": []}', "it looks like JSON: send it as application/json"),
        (b"\x1f\x8b\x08\x00", "it looks gzip-compressed: set Content-Encoding: gzip"),
    ],
)
def test_a_body_that_is_not_protobuf_raises_decode_error(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=re.escape(message)):
        decode_logs_protobuf(body)


def test_a_log_body_that_is_not_utf8_raises_decode_error() -> None:
    body = request(record(body="\x00")).SerializeToString().replace(b"\x0a\x01\x00", b"\x0a\x01\xff")

    with pytest.raises(DecodeError, match=r"^body .* is not a valid ExportLogsServiceRequest: .*UTF-8.*xff"):
        decode_logs_protobuf(body)


@pytest.mark.parametrize("body", [b"", ExportLogsServiceRequest().SerializeToString(), request().SerializeToString()])
def test_an_empty_request_gives_no_rows_and_the_schema(body: bytes) -> None:
    result = decode_logs_protobuf(body)

    assert (rows(result), result.rejected, result.error_message) == ([], 0, "")


def test_logs_from_the_real_sdk_decode_to_their_rows() -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "shop", "service.version": "3"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger("shop.web.test")
    logger.propagate, logger.level = False, logging.DEBUG
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    try:
        tracer = TracerProvider().get_tracer("t")
        with tracer.start_as_current_span("GET /cart") as span:
            logger.warning("cart %s is empty", "c1", extra={"user.id": 7, "ratio": 0.5})
        logger.info("done")
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
    warning, info = exporter.get_finished_logs()
    resource = [(k, str(v)) for k, v in warning.resource.attributes.items()]

    got = both(encode_logs([warning, info]))

    def expected(r: Any, **columns: object) -> dict[str, object]:
        attrs = [(k, str(v)) for k, v in r.log_record.attributes.items()]
        return row(
            Timestamp=ts(r.log_record.timestamp),
            ObservedTimestamp=ts(r.log_record.observed_timestamp),
            ServiceName="shop",
            ServiceVersion="3",
            ResourceAttributes=resource,
            ScopeName="shop.web.test",
            LogAttributes=attrs,
            LogAttributeTypes=[
                (k, {int: "int", float: "double"}[type(v)])
                for k, v in r.log_record.attributes.items()
                if not isinstance(v, str)
            ],
            **columns,
        )

    context = span.get_span_context()
    assert got == [
        expected(
            warning,
            TraceId=f"{context.trace_id:032x}",
            SpanId=f"{context.span_id:016x}",
            TraceFlags=int(context.trace_flags),
            SeverityText="WARN",
            SeverityNumber=13,
            Body="cart c1 is empty",
        ),
        expected(info, SeverityText="INFO", SeverityNumber=9, Body="done"),
    ]
    assert ("user.id", "7") in got[0]["LogAttributes"]  # type: ignore[operator]


records = st.builds(
    lambda time, observed, trace_id, span_id, flags, severity, text, body, attrs: record(
        time_unix_nano=time,
        observed_time_unix_nano=observed,
        trace_id=trace_id,
        span_id=span_id,
        flags=flags,
        severity_number=severity,
        severity_text=text,
        body=body,
        attributes=attrs,
    ),
    st.integers(0, 2**63 - 1),
    st.integers(1, 2**63 - 1),
    st.one_of(st.just(b""), st.binary(min_size=16, max_size=16).filter(any)),
    st.one_of(st.just(b""), st.binary(min_size=8, max_size=8).filter(any)),
    st.integers(0, 2**32 - 1),
    st.integers(0, 24),
    st.text(max_size=10),
    st.one_of(st.text(max_size=300), st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans(), st.binary()),
    st.lists(st.tuples(st.text(max_size=10), st.one_of(st.text(max_size=200), st.integers(-5, 5))), max_size=8),
)


def expected_body(v: AnyValue) -> tuple[str, str]:
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value, ""
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode(), "bytes"
    if which == "bool_value":
        return ("true" if v.bool_value else "false"), "bool"
    return repr(getattr(v, str(which))), str(which).removesuffix("_value")


@settings(max_examples=100, deadline=None)
@given(st.lists(records, min_size=1, max_size=20))
def test_random_valid_records_round_trip_exactly_by_both_paths(recs: list[LogRecord]) -> None:
    got = both(request(*recs))

    assert got == [
        row(
            Timestamp=ts(r.time_unix_nano or r.observed_time_unix_nano),
            ObservedTimestamp=ts(r.observed_time_unix_nano),
            TraceId=r.trace_id.hex(),
            SpanId=r.span_id.hex(),
            TraceFlags=r.flags & 0xFF,
            SeverityText=r.severity_text,
            SeverityNumber=r.severity_number,
            Body=expected_body(r.body)[0],
            BodyType=expected_body(r.body)[1],
            LogAttributes=[(kv.key, expected_body(kv.value)[0]) for kv in r.attributes],
            LogAttributeTypes=[(kv.key, "int") for kv in r.attributes if kv.value.HasField("int_value")],
        )
        for r in recs
    ]


# ---- OTLP/JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize("numbers", [False, True], ids=["int64-as-strings", "int64-as-numbers"])
@pytest.mark.parametrize("upper", [False, True], ids=["lower-hex", "upper-hex"])
@pytest.mark.parametrize("enum_names", [False, True], ids=["int-enums", "enum-names"])
def test_the_same_request_as_json_gives_the_same_rows(numbers: bool, upper: bool, enum_names: bool) -> None:
    req = full_request()
    body = otlp_json(req, numbers=numbers, upper=upper, enum_names=enum_names)

    result = decode_logs_json(body)

    assert (result.rejected, result.error_message) == (0, "")
    assert rows(result) == rows(decode_logs_protobuf(req.SerializeToString())) == [FULL_ROW]


def test_json_with_empty_arrays_and_unknown_fields_decodes() -> None:
    doc = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
                "scopeLogs": [
                    {
                        "scope": {"name": "s", "attributes": []},
                        "logRecords": [
                            {
                                "timeUnixNano": T0,
                                "observedTimeUnixNano": str(T0 + 5),
                                "severityNumber": "SEVERITY_NUMBER_WARN",
                                "traceId": "",
                                "spanId": "",
                                "body": {"stringValue": "started"},
                                "attributes": [{"key": "n", "value": {"intValue": 3, "futureType": 1}}],
                                "droppedAttributesCount": 0,
                                "someFutureField": {"x": [1, 2]},
                            }
                        ],
                        "schemaUrl": "",
                    }
                ],
            }
        ],
        "extra": True,
    }

    assert rows(decode_logs_json(json.dumps(doc).encode())) == [
        row(
            SeverityNumber=13,
            ServiceName="web",
            ResourceAttributes=[("service.name", "web")],
            ScopeName="s",
            LogAttributes=[("n", "3")],
            LogAttributeTypes=[("n", "int")],
        )
    ]


def test_a_bad_hex_id_in_json_rejects_only_its_record() -> None:
    doc = json.loads(otlp_json(request(record(body="1"), record(body="2", trace_id=TRACE), record(span_id=SPAN))))
    records_json = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    records_json[1]["traceId"] = "abc"
    records_json[2]["spanId"] = base64.b64encode(SPAN).decode()

    result = decode_logs_json(json.dumps(doc).encode())

    assert rows(result) == [row(Body="1")]
    assert result.rejected == 2
    assert result.error_message == (
        "rejected 2 of 3 log records: "
        "resourceLogs[0].scopeLogs[0].logRecords[1].traceId: expected 32 hex characters, got 'abc'; "
        "resourceLogs[0].scopeLogs[0].logRecords[2].spanId: expected 16 hex characters, "
        "got '7uGbfsPBsXQ=' (OTLP/JSON ids are hex, not base64)"
    )


def test_json_records_without_times_or_with_a_bad_severity_are_rejected_with_json_field_names() -> None:
    doc = json.loads(otlp_json(request(record(time_unix_nano=0, observed_time_unix_nano=0), record())))
    doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][1]["severityNumber"] = 99

    result = decode_logs_json(json.dumps(doc).encode())

    assert (rows(result), result.rejected) == ([], 2)
    assert result.error_message == (
        "rejected 2 of 2 log records: "
        "resourceLogs[0].scopeLogs[0].logRecords[0].timeUnixNano and observedTimeUnixNano are both 0; "
        "resourceLogs[0].scopeLogs[0].logRecords[1].severityNumber 99 is out of range (0 to 24)"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "body must be a JSON object with resourceLogs, got an array"),
        (b'{"resourceLogs": [', "body is not valid JSON: Expecting value at line 1 column 19"),
        (b"\xff{}", "body is not UTF-8 JSON"),
        (b'{"resourceLogs": {}}', "resourceLogs: expected an array, got an object"),
        (
            b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "12x"}]}]}]}',
            "resourceLogs[0].scopeLogs[0].logRecords[0].timeUnixNano: expected an integer "
            "(number or decimal string), got '12x'",
        ),
        (
            b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": 5}}]}]}]}',
            "resourceLogs[0].scopeLogs[0].logRecords[0].body.stringValue: unexpected a number 5",
        ),
        (
            b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"severityNumber": "LOUD"}]}]}]}',
            "resourceLogs[0].scopeLogs[0].logRecords[0].severityNumber: expected an integer",
        ),
    ],
)
def test_json_that_cannot_be_read_raises_decode_error_naming_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode_logs_json(body)

    assert str(err.value).startswith(message)


@pytest.mark.parametrize("body", [b"{}", b'{"resourceLogs": []}', b'{"resourceLogs": [{"scopeLogs": [{}]}]}'])
def test_an_empty_json_request_gives_no_rows_and_the_schema(body: bytes) -> None:
    assert rows(decode_logs_json(body)) == []
