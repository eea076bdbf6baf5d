"""Decoding OTLP trace requests (protobuf and JSON) into rows of the spans table."""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

import pytest
from google.protobuf.internal import api_implementation
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, StatusCode

from tests.collector.otlp_values import SPAN, TRACE, kvs, otlp_json, ts, val
from vigil.collector.decode.otlp_traces import decode_traces_json, decode_traces_protobuf
from vigil.errors import DecodeError
from vigil.store.schema import SPANS_ARROW_SCHEMA
from vigil.types import DecodeResult

T0 = 1_700_000_000_000_000_000
PARENT = bytes.fromhex("eee19b7ec3c1b173")


# ---- building requests and expected rows -------------------------------------------------------


def span(**fields: Any) -> Span:
    """A valid span, with `fields` set on top."""
    base: dict[str, Any] = {
        "trace_id": TRACE,
        "span_id": SPAN,
        "name": "GET /items",
        "start_time_unix_nano": T0,
        "end_time_unix_nano": T0 + 250_000,
    }
    attrs = fields.pop("attributes", {})
    return Span(**(base | fields), attributes=kvs(attrs))


def request(*spans: Span, resource: dict[str, object] | None = None, scope: tuple[str, str] = ("", "")):
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kvs({"service.name": "checkout"} if resource is None else resource))
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = scope
    ss.spans.extend(spans)
    return req


def row(**columns: object) -> dict[str, object]:
    """The expected row of `span()` in `request()`, with `columns` on top."""
    base: dict[str, object] = {
        "Timestamp": ts(T0),
        "TraceId": TRACE.hex(),
        "SpanId": SPAN.hex(),
        "ParentSpanId": "",
        "TraceState": "",
        "SpanName": "GET /items",
        "SpanKind": "Unspecified",
        "ServiceName": "checkout",
        "ServiceVersion": "",
        "ResourceAttributes": [("service.name", "checkout")],
        "ResourceAttributeTypes": [],
        "ScopeName": "",
        "ScopeVersion": "",
        "SpanAttributes": [],
        "SpanAttributeTypes": [],
        "Duration": 250_000,
        "StatusCode": "Unset",
        "StatusMessage": "",
        "Events.Timestamp": [],
        "Events.Name": [],
        "Events.Attributes": [],
        "Events.AttributeTypes": [],
        "Links.TraceId": [],
        "Links.SpanId": [],
        "Links.TraceState": [],
        "Links.Attributes": [],
        "Links.AttributeTypes": [],
    }
    assert set(columns) <= set(base), set(columns) - set(base)
    return base | columns


def rows(result: DecodeResult) -> list[dict[str, object]]:
    assert result.batches[0].table == "spans"
    assert result.batches[0].rows.schema.equals(SPANS_ARROW_SCHEMA)
    return result.batches[0].rows.to_pylist()  # type: ignore[no-any-return]


def attribute_field(raw_kv: bytes) -> bytes:
    """`raw_kv` as a Span.attributes field (number 9, length-delimited), to append to a span's encoding."""
    n, length = len(raw_kv), b""
    while n >= 0x80:
        length, n = length + bytes([n & 0x7F | 0x80]), n >> 7
    return b"\x4a" + length + bytes([n]) + raw_kv


# ---- protobuf --------------------------------------------------------------------------------

EVERY_TYPE: list[tuple[str, object]] = [
    ("s", "héllo"),
    ("i", 200),
    ("neg", -(2**63)),
    ("d", 1.5),
    ("whole", 3.0),
    ("inf", math.inf),
    ("tiny", 1e-300),
    ("t", True),
    ("f", False),
    ("b", b"\x00\xffhi"),
    ("arr", ["a", 1, True, 2.5, b"\x01", None, ["x"], {"k": "v"}]),
    ("kv", {"a": 1, "b": ["c"], "c": b"\x02", "d": None}),
    ("none", None),
    ("empty_str", ""),
]
EVERY_TYPE_TEXTS = [
    ("s", "héllo"),
    ("i", "200"),
    ("neg", "-9223372036854775808"),
    ("d", "1.5"),
    ("whole", "3.0"),
    ("inf", "inf"),
    ("tiny", "1e-300"),
    ("t", "true"),
    ("f", "false"),
    ("b", "AP9oaQ=="),
    ("arr", '["a",1,true,2.5,"AQ==",null,["x"],{"k":"v"}]'),
    ("kv", '{"a":1,"b":["c"],"c":"Ag==","d":null}'),
    ("none", ""),
    ("empty_str", ""),
]
EVERY_TYPE_TYPES = [
    ("i", "int"),
    ("neg", "int"),
    ("d", "double"),
    ("whole", "double"),
    ("inf", "double"),
    ("tiny", "double"),
    ("t", "bool"),
    ("f", "bool"),
    ("b", "bytes"),
    ("arr", "array"),
    ("kv", "kvlist"),
    ("none", "empty"),
]


def full_request() -> ExportTraceServiceRequest:
    """One span that sets everything: every attribute type, events and links with attributes."""
    sp = span(
        parent_span_id=PARENT,
        trace_state="vendor=1",
        kind=Span.SPAN_KIND_SERVER,
        attributes=EVERY_TYPE,
        status=Status(code=Status.STATUS_CODE_ERROR, message="boom"),
    )
    sp.events.add(time_unix_nano=T0 + 5, name="exception", attributes=kvs({"exception.type": "E", "n": 3}))
    sp.events.add(time_unix_nano=T0 + 6, name="retry")
    sp.links.add(trace_id=b"\x11" * 16, span_id=b"\x22" * 8, trace_state="a=b", attributes=kvs({"w": 0.25}))
    return request(
        sp,
        resource={"service.name": "checkout", "service.version": "1.4.2", "host.cpus": 8},
        scope=("io.opentelemetry.flask", "0.45b0"),
    )


FULL_ROW = row(
    ParentSpanId=PARENT.hex(),
    TraceState="vendor=1",
    SpanKind="Server",
    ServiceVersion="1.4.2",
    ResourceAttributes=[("service.name", "checkout"), ("service.version", "1.4.2"), ("host.cpus", "8")],
    ResourceAttributeTypes=[("host.cpus", "int")],
    ScopeName="io.opentelemetry.flask",
    ScopeVersion="0.45b0",
    SpanAttributes=EVERY_TYPE_TEXTS,
    SpanAttributeTypes=EVERY_TYPE_TYPES,
    StatusCode="Error",
    StatusMessage="boom",
    **{
        "Events.Timestamp": [ts(T0 + 5), ts(T0 + 6)],
        "Events.Name": ["exception", "retry"],
        "Events.Attributes": [[("exception.type", "E"), ("n", "3")], []],
        "Events.AttributeTypes": [[("n", "int")], []],
        "Links.TraceId": ["11" * 16],
        "Links.SpanId": ["22" * 8],
        "Links.TraceState": ["a=b"],
        "Links.Attributes": [[("w", "0.25")]],
        "Links.AttributeTypes": [[("w", "double")]],
    },
)


def test_the_upb_protobuf_backend_is_active() -> None:
    assert api_implementation.Type() == "upb"


def test_a_span_that_sets_every_field_decodes_to_the_exact_row() -> None:
    result = decode_traces_protobuf(full_request().SerializeToString())

    assert (result.rejected, result.error_message) == (0, "")
    assert rows(result) == [FULL_ROW]


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        (0, "Unspecified"),
        (1, "Internal"),
        (2, "Server"),
        (3, "Client"),
        (4, "Producer"),
        (5, "Consumer"),
        (9, "Unspecified"),
    ],
)
def test_each_span_kind_is_named_and_unknown_kinds_are_unspecified(kind: int, name: str) -> None:
    assert rows(decode_traces_protobuf(request(span(kind=kind)).SerializeToString())) == [row(SpanKind=name)]


@pytest.mark.parametrize(("code", "name"), [(0, "Unset"), (1, "Ok"), (2, "Error"), (7, "Unset")])
def test_each_status_code_is_named_and_unknown_codes_are_unset(code: int, name: str) -> None:
    req = request(span(status=Status(code=code, message="m")), span(span_id=b"\x01" * 8))

    assert rows(decode_traces_protobuf(req.SerializeToString())) == [
        row(StatusCode=name, StatusMessage="m"),
        row(SpanId="01" * 8),
    ]


def test_a_resource_without_service_name_is_unknown_service() -> None:
    req = request(span(), resource={"host.name": "a"})

    assert rows(decode_traces_protobuf(req.SerializeToString())) == [
        row(ServiceName="unknown_service", ResourceAttributes=[("host.name", "a")])
    ]


def test_string_only_attributes_leave_the_type_map_empty_and_keep_duplicates_in_order() -> None:
    attrs = [("b", "1"), ("a", "2"), ("b", "3")]
    req = request(span(attributes=attrs))

    assert rows(decode_traces_protobuf(req.SerializeToString())) == [row(SpanAttributes=attrs)]


def test_spans_under_several_resources_and_scopes_get_their_own_resource_and_scope() -> None:
    req = request(span(span_id=b"\x01" * 8), resource={"service.name": "a"}, scope=("s1", "1"))
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kvs({"service.name": 7, "service.version": "2"}))
    rs.scope_spans.add().scope.name = "empty"
    ss = rs.scope_spans.add()
    ss.scope.name = "s2"
    ss.spans.extend([span(span_id=b"\x02" * 8), span(span_id=b"\x03" * 8)])
    other = {"ServiceName": "7", "ServiceVersion": "2", "ScopeName": "s2"}
    other |= {"ResourceAttributes": [("service.name", "7"), ("service.version", "2")]}
    other |= {"ResourceAttributeTypes": [("service.name", "int")]}

    assert rows(decode_traces_protobuf(req.SerializeToString())) == [
        row(
            SpanId="01" * 8,
            ServiceName="a",
            ResourceAttributes=[("service.name", "a")],
            ScopeName="s1",
            ScopeVersion="1",
        ),
        row(SpanId="02" * 8, **other),
        row(SpanId="03" * 8, **other),
    ]


def test_many_distinct_numbers_decode_to_their_texts() -> None:
    # Distinct ints, doubles and bools go through the bulk path; each must land on its own span.
    values = [(i * 7919 - 3000, i / 7 - 50.0, 1e12 * i, i % 3 == 0) for i in range(300)]
    req = request(*(span(span_id=(i + 1).to_bytes(8, "big"), attributes={"n": n, "x": x, "big": b, "flag": f})
                    for i, (n, x, b, f) in enumerate(values)))  # fmt: skip

    got = rows(decode_traces_protobuf(req.SerializeToString()))

    assert [r["SpanAttributes"] for r in got] == [
        [("n", str(n)), ("x", repr(x)), ("big", repr(b)), ("flag", "true" if f else "false")] for n, x, b, f in values
    ]
    assert {str(r["SpanAttributeTypes"]) for r in got} == {
        "[('n', 'int'), ('x', 'double'), ('big', 'double'), ('flag', 'bool')]"
    }


def test_non_canonical_attribute_encodings_decode_as_protobuf_would() -> None:
    # Hand-made encodings a real SDK never sends: a value with two fields (the last wins), a
    # 2-byte length, a KeyValue with the value before the key, and an AnyValue with an unknown field.
    raw_kvs = [
        b"\x0a\x01a" + b"\x12\x04\x18\x05\x18\x06",  # int 5, then int 6
        b"\x0a\x01b" + b"\x12\x05\x18\x05\x0a\x01z",  # int, then string "z"
        b"\x0a\x01c" + b"\x12\x83\x01\x0a\x80\x01" + b"y" * 128,  # 130-byte value
        b"\x12\x03\x0a\x01v" + b"\x0a\x01d",  # value first
        b"\x0a\x01e" + b"\x12\x04\x10\x01\x48\x07",  # bool true, unknown field 9
    ]
    body = request(span()).SerializeToString()
    sp = ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans[0]
    req = request(Span.FromString(sp.SerializeToString() + b"".join(map(attribute_field, raw_kvs))))

    assert rows(decode_traces_protobuf(req.SerializeToString())) == [
        row(
            SpanAttributes=[("a", "6"), ("b", "z"), ("c", "y" * 128), ("d", "v"), ("e", "true")],
            SpanAttributeTypes=[("a", "int"), ("e", "bool")],
        )
    ]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(), min_size=1, max_size=40))
def test_doubles_read_exactly_as_python_repr(xs: list[float]) -> None:
    req = request(span(attributes=[(f"x{i}", x) for i, x in enumerate(xs)]))

    (got,) = rows(decode_traces_protobuf(req.SerializeToString()))

    assert got["SpanAttributes"] == [(f"x{i}", repr(x)) for i, x in enumerate(xs)]


def test_invalid_spans_are_rejected_and_counted_and_the_valid_ones_kept() -> None:
    bad_link = span(span_id=b"\x05" * 8)
    bad_link.links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 3)
    req = request(
        span(span_id=b"\x01" * 8),
        span(trace_id=b"\xab" * 4),
        span(span_id=bytes(8)),
        span(start_time_unix_nano=0, end_time_unix_nano=0),
        span(span_id=b"\x02" * 8, parent_span_id=b"\x01" * 3, end_time_unix_nano=T0 - 1),
        bad_link,
        span(span_id=b"\x03" * 8, trace_id=TRACE.hex().encode()),
    )

    result = decode_traces_protobuf(req.SerializeToString())

    assert rows(result) == [row(SpanId="01" * 8)]
    assert result.rejected == 6
    assert result.error_message == (
        "rejected 6 of 7 spans: "
        "span 1 (resource 0, scope 0): trace_id must be 16 bytes, got 4; "
        "span 2 (resource 0, scope 0): span_id is all zeros, which is not a valid id; "
        "span 3 (resource 0, scope 0): start_time_unix_nano is 0 (it must be the span's start, "
        "in nanoseconds since the Unix epoch); "
        "span 4 (resource 0, scope 0): parent_span_id must be 8 bytes, got 3; "
        f"span 4 (resource 0, scope 0): end_time_unix_nano {T0 - 1} is before start_time_unix_nano {T0}"
        "; and more"
    )


def test_a_hex_text_trace_id_gets_a_hint_and_a_bad_link_rejects_its_span() -> None:
    bad_link = span()
    bad_link.links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 3)
    req = request(
        span(trace_id=TRACE.hex().encode()), bad_link, span(start_time_unix_nano=2**63, end_time_unix_nano=2**64 - 1)
    )

    result = decode_traces_protobuf(req.SerializeToString())

    assert (rows(result), result.rejected) == ([], 3)
    assert result.error_message == (
        "rejected 3 of 3 spans: "
        "span 0 (resource 0, scope 0): trace_id must be 16 bytes, got 32 (hex text? send the raw bytes); "
        "span 1 (resource 0, scope 0): links[0].span_id must be 8 bytes, got 3; "
        "span 2 (resource 0, scope 0): start_time_unix_nano 9223372036854775808 is after the year 2262 "
        "(nanoseconds since the Unix epoch expected); "
        "span 2 (resource 0, scope 0): end_time_unix_nano 18446744073709551615 is after the year 2262 "
        "(nanoseconds since the Unix epoch expected)"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"\x0a\x05\x12\x03",
            "body (4 bytes) is not a valid ExportTraceServiceRequest: malformed protobuf (Wire format",
        ),
        (b'{"resourceSpans": []}', "it looks like JSON: send it as application/json"),
        (b"\x1f\x8b\x08\x00", "it looks gzip-compressed: set Content-Encoding: gzip"),
    ],
)
def test_a_body_that_is_not_protobuf_raises_decode_error(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=re.escape(message)):
        decode_traces_protobuf(body)


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        (b"\x0a\x01k\x12\x03\x0a\x01\xff", "invalid start byte at b'\\xff'"),  # the canonical layout, cut by hand
        (b"\x0a\x01k\x12\x05\x0a\x02\xc3\x28\x48", ""),  # an unknown trailing field: the real AnyValue
        (b"\x0a\x01\xff\x12\x03\x0a\x01a", "invalid start byte at b'\\xff'"),  # in the key
    ],
)
def test_an_attribute_that_is_not_utf8_raises_decode_error(bad: bytes, where: str) -> None:
    span_bytes = span().SerializeToString() + attribute_field(bad)
    body = b"\x0a" + bytes([len(span_bytes) + 4]) + b"\x12" + bytes([len(span_bytes) + 2])
    body += b"\x12" + bytes([len(span_bytes)]) + span_bytes  # resource_spans[0].scope_spans[0].spans[0]

    with pytest.raises(DecodeError, match=r"^body .* is not a valid ExportTraceServiceRequest: .*UTF-8") as err:
        decode_traces_protobuf(body)

    assert where in str(err.value)


@pytest.mark.parametrize("value", [b"\x21\x01\x02", b"\x18\x85", b"\x0a\x05ab"])
def test_a_truncated_attribute_value_raises_decode_error(value: bytes) -> None:
    # Followed by a good attribute, so a decoder that read past the value's end would go unnoticed.
    bad = b"\x0a\x01k\x12" + bytes([len(value)]) + value
    good = KeyValue(key="after", value=val(1.5)).SerializeToString()
    span_bytes = span().SerializeToString() + attribute_field(bad) + attribute_field(good)
    body = b"\x0a" + bytes([len(span_bytes) + 4]) + b"\x12" + bytes([len(span_bytes) + 2])
    body += b"\x12" + bytes([len(span_bytes)]) + span_bytes

    with pytest.raises(DecodeError, match=r"^body \(\d+ bytes\) is not a valid ExportTraceServiceRequest: malformed"):
        decode_traces_protobuf(body)


@pytest.mark.parametrize("body", [b"", ExportTraceServiceRequest().SerializeToString(), request().SerializeToString()])
def test_an_empty_request_gives_no_rows_and_the_schema(body: bytes) -> None:
    result = decode_traces_protobuf(body)

    assert (rows(result), result.rejected, result.error_message) == ([], 0, "")


def test_spans_from_the_real_sdk_decode_to_their_rows() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop", "service.version": "3"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.web", "1.0")
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER, attributes={"http.status_code": 200}) as root:
        root.add_event("cache miss", {"key": "cart:1"})
        with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT, links=[Link(root.get_span_context())]) as db:
            db.set_attribute("db.rows", 3.5)
            db.set_status(StatusCode.ERROR, "timeout")
    provider.shutdown()
    child, parent = exporter.get_finished_spans()
    resource = [(k, str(v)) for k, v in parent.resource.attributes.items()]

    got = rows(decode_traces_protobuf(encode_spans([child, parent]).SerializeToString()))

    def expected(s: Any, **columns: object) -> dict[str, object]:
        assert s.start_time and s.end_time
        return row(
            Timestamp=ts(s.start_time),
            TraceId=f"{s.context.trace_id:032x}",
            SpanId=f"{s.context.span_id:016x}",
            SpanName=s.name,
            ServiceName="shop",
            ServiceVersion="3",
            ResourceAttributes=resource,
            ScopeName="shop.web",
            ScopeVersion="1.0",
            Duration=s.end_time - s.start_time,
            **columns,
        )

    assert got == [
        expected(
            child,
            ParentSpanId=f"{parent.context.span_id:016x}",
            SpanKind="Client",
            SpanAttributes=[("db.rows", "3.5")],
            SpanAttributeTypes=[("db.rows", "double")],
            StatusCode="Error",
            StatusMessage="timeout",
            **{
                "Links.TraceId": [f"{parent.context.trace_id:032x}"],
                "Links.SpanId": [f"{parent.context.span_id:016x}"],
                "Links.TraceState": [""],
                "Links.Attributes": [[]],
                "Links.AttributeTypes": [[]],
            },
        ),
        expected(
            parent,
            SpanKind="Server",
            SpanAttributes=[("http.status_code", "200")],
            SpanAttributeTypes=[("http.status_code", "int")],
            **{
                "Events.Timestamp": [ts(parent.events[0].timestamp)],
                "Events.Name": ["cache miss"],
                "Events.Attributes": [[("key", "cart:1")]],
                "Events.AttributeTypes": [[]],
            },
        ),
    ]


span_ids = st.binary(min_size=8, max_size=8).filter(any)
valid_spans = st.builds(
    lambda trace_id, span_id, parent, name, start, duration, attrs: span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration,
        attributes=attrs,
    ),
    st.binary(min_size=16, max_size=16).filter(any),
    span_ids,
    st.one_of(st.just(b""), span_ids),
    st.text(max_size=30),
    st.integers(1, 2**62),
    # Below 2**62 so that start + duration stays under 2**63, the last storable nanosecond.
    st.integers(0, 2**62 - 1),
    st.lists(st.tuples(st.text(max_size=10), st.text(max_size=200)), max_size=8),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(valid_spans, min_size=1, max_size=20))
def test_random_valid_spans_round_trip_exactly(spans: list[Span]) -> None:
    got = rows(decode_traces_protobuf(request(*spans).SerializeToString()))

    assert got == [
        row(
            Timestamp=ts(s.start_time_unix_nano),
            TraceId=s.trace_id.hex(),
            SpanId=s.span_id.hex(),
            ParentSpanId=s.parent_span_id.hex(),
            SpanName=s.name,
            Duration=s.end_time_unix_nano - s.start_time_unix_nano,
            SpanAttributes=[(kv.key, kv.value.string_value) for kv in s.attributes],
        )
        for s in spans
    ]


# ---- OTLP/JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize("numbers", [False, True], ids=["int64-as-strings", "int64-as-numbers"])
@pytest.mark.parametrize("upper", [False, True], ids=["lower-hex", "upper-hex"])
def test_the_same_request_as_json_gives_the_same_rows(numbers: bool, upper: bool) -> None:
    req = full_request()
    body = otlp_json(req, numbers=numbers, upper=upper)

    result = decode_traces_json(body)

    assert (result.rejected, result.error_message) == (0, "")
    assert rows(result) == rows(decode_traces_protobuf(req.SerializeToString())) == [FULL_ROW]


def test_json_from_node_with_empty_arrays_and_zero_counts_and_unknown_fields_decodes() -> None:
    doc = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "web"}}],
                    "droppedAttributesCount": 0,
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "s", "version": "", "attributes": []},
                        "spans": [
                            {
                                "traceId": TRACE.hex(),
                                "spanId": SPAN.hex(),
                                "parentSpanId": "",
                                "name": "GET /items",
                                "kind": 2,
                                "startTimeUnixNano": T0,
                                "endTimeUnixNano": str(T0 + 250_000),
                                "attributes": [{"key": "n", "value": {"intValue": 3, "futureType": 1}}],
                                "droppedAttributesCount": 0,
                                "events": [],
                                "links": [],
                                "status": {},
                                "flags": 257,
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

    assert rows(decode_traces_json(json.dumps(doc).encode())) == [
        row(
            SpanKind="Server",
            ServiceName="web",
            ResourceAttributes=[("service.name", "web")],
            ScopeName="s",
            SpanAttributes=[("n", "3")],
            SpanAttributeTypes=[("n", "int")],
        )
    ]


def test_a_bad_hex_id_in_json_rejects_only_its_span() -> None:
    spans = [span(span_id=b"\x01" * 8), span(span_id=b"\x02" * 8), span(span_id=b"\x03" * 8)]
    spans[2].links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    doc = json.loads(otlp_json(request(*spans)))
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["traceId"] = "abc"
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][2]["links"][0]["spanId"] = base64.b64encode(b"\x02" * 8).decode()

    result = decode_traces_json(json.dumps(doc).encode())

    assert rows(result) == [row(SpanId="01" * 8)]
    assert result.rejected == 2
    assert result.error_message == (
        "rejected 2 of 3 spans: "
        "resourceSpans[0].scopeSpans[0].spans[1].traceId: expected 32 hex characters, got 'abc'; "
        "resourceSpans[0].scopeSpans[0].spans[2].links[0].spanId: expected 16 hex characters, "
        "got 'AgICAgICAgI=' (OTLP/JSON ids are hex, not base64)"
    )


def test_json_spans_with_zero_ids_or_no_start_are_rejected_with_json_field_names() -> None:
    doc = json.loads(otlp_json(request(span(span_id=bytes(8)), span(start_time_unix_nano=0))))

    result = decode_traces_json(json.dumps(doc).encode())

    assert (rows(result), result.rejected) == ([], 2)
    assert result.error_message == (
        "rejected 2 of 2 spans: "
        "resourceSpans[0].scopeSpans[0].spans[0].spanId is all zeros, which is not a valid id; "
        "resourceSpans[0].scopeSpans[0].spans[1].startTimeUnixNano is 0 (it must be the span's start, "
        "in nanoseconds since the Unix epoch)"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "body must be a JSON object with resourceSpans, got an array"),
        (b"null", "body must be a JSON object with resourceSpans, got null"),
        (b'{"resourceSpans": [', "body is not valid JSON: Expecting value at line 1 column 20"),
        (b"\xff{}", "body is not UTF-8 JSON"),
        (b'{"resourceSpans": {}}', "resourceSpans: expected an array, got an object"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "12x"}]}]}]}',
            "resourceSpans[0].scopeSpans[0].spans[0].startTimeUnixNano: expected an integer "
            "(number or decimal string), got '12x'",
        ),
        (
            b'{"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": {"stringValue": 5}}]}}]}',
            "resourceSpans[0].resource.attributes[0].value.stringValue: unexpected a number 5",
        ),
    ],
)
def test_json_that_cannot_be_read_raises_decode_error_naming_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode_traces_json(body)

    assert str(err.value).startswith(message)


@pytest.mark.parametrize("body", [b"{}", b'{"resourceSpans": []}', b'{"resourceSpans": [{"scopeSpans": [{}]}]}'])
def test_an_empty_json_request_gives_no_rows_and_the_schema(body: bytes) -> None:
    assert rows(decode_traces_json(body)) == []
