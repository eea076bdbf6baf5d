"""Decode OTLP trace export requests (protobuf and JSON) into rows of the spans table.

Both decoders are pure: bytes in, a `DecodeResult` whose rows have exactly `SPANS_ARROW_SCHEMA`.
Invalid spans are dropped and counted (OTLP partial success); an unreadable body raises `DecodeError`.

Why the protobuf path looks unusual: with the real generated classes every attribute costs a
Python wrapper for the KeyValue, another for the AnyValue and a `WhichOneof` call, and that caps
decoding near 70k spans/s. So at import we build, with `descriptor_pb2`, a *wire-compatible*
"lite" copy of the trace messages in which every `repeated KeyValue` (and `Span.events`,
`Span.links`, `Span.status`) is declared `bytes`. Length-delimited messages and bytes share one
wire type, so upb parses the same body, but hands each attribute back as its raw KeyValue
encoding, with no per-attribute objects. Those raw encodings repeat a lot (same key, same value),
so Arrow dictionary-encodes them and Python decodes only the distinct ones (strings by hand,
rare types through the real `AnyValue`); the columns are then `take`n back and assembled into
Map columns from flat keys, values and offsets. Span scalars come out via one `attrgetter` per span.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain, repeat
from operator import attrgetter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from vigil.errors import DecodeError
from vigil.store.schema import SPANS_ARROW_SCHEMA
from vigil.types import DecodeResult, RowBatch

__all__ = ["decode_traces_json", "decode_traces_protobuf"]

_KINDS = pa.array(["Unspecified", "Internal", "Server", "Client", "Producer", "Consumer"])
_STATUSES = pa.array(["Unset", "Ok", "Error"])
_KIND_ENUM = {
    f"SPAN_KIND_{n}": i for i, n in enumerate(["UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"])
}
_STATUS_ENUM = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_I64_MAX = 2**63 - 1
_DOUBLE = struct.Struct("<d")
_DECIMAL = re.compile(r"-?[0-9]+")
_Attr = tuple[str, str, str | None]  # key, value as text, OTLP type (None for a string)


def _lite_classes() -> dict[str, Any]:
    """The lite OTLP trace messages; field numbers follow opentelemetry/proto/trace/v1/trace.proto."""
    layout: dict[str, list[tuple[str, int, str]]] = {
        "Request": [("resource_spans", 1, "*ResourceSpans")],
        "ResourceSpans": [("resource", 1, "Resource"), ("scope_spans", 2, "*ScopeSpans")],
        "Resource": [("attributes", 1, "*bytes")],
        "ScopeSpans": [("scope", 1, "Scope"), ("spans", 2, "*Span")],
        "Scope": [("name", 1, "string"), ("version", 2, "string")],
        "Span": [
            ("trace_id", 1, "bytes"),
            ("span_id", 2, "bytes"),
            ("trace_state", 3, "string"),
            ("parent_span_id", 4, "bytes"),
            ("name", 5, "string"),
            ("kind", 6, "int32"),
            ("start_time_unix_nano", 7, "fixed64"),
            ("end_time_unix_nano", 8, "fixed64"),
            ("attributes", 9, "*bytes"),
            ("events", 11, "*bytes"),
            ("links", 13, "*bytes"),
            ("status", 15, "bytes"),
        ],
        "Event": [("time_unix_nano", 1, "fixed64"), ("name", 2, "string"), ("attributes", 3, "*bytes")],
        "Link": [
            ("trace_id", 1, "bytes"),
            ("span_id", 2, "bytes"),
            ("trace_state", 3, "string"),
            ("attributes", 4, "*bytes"),
        ],
        "Status": [("message", 2, "string"), ("code", 3, "int32")],
        "KeyValue": [("key", 1, "string"), ("value", 2, "bytes")],
    }
    fdp = descriptor_pb2.FieldDescriptorProto
    scalars = {"bytes": fdp.TYPE_BYTES, "string": fdp.TYPE_STRING, "fixed64": fdp.TYPE_FIXED64,
               "int32": fdp.TYPE_INT32}  # fmt: skip
    fd = descriptor_pb2.FileDescriptorProto(name="vigil/lite_trace.proto", package="vigil.lite", syntax="proto3")
    for name, fields in layout.items():
        msg = fd.message_type.add(name=name)
        for fname, number, typ in fields:
            f = msg.field.add(name=fname, number=number)
            f.label = fdp.LABEL_REPEATED if typ.startswith("*") else fdp.LABEL_OPTIONAL
            typ = typ.lstrip("*")
            if typ in scalars:
                f.type = scalars[typ]
            else:
                f.type, f.type_name = fdp.TYPE_MESSAGE, f".vigil.lite.{typ}"
    pool = descriptor_pool.DescriptorPool()  # private pool: never clashes with the real OTLP names
    pool.Add(fd)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"vigil.lite.{n}")) for n in layout}


_LITE = _lite_classes()
_SPAN_FIELDS = attrgetter(
    "trace_id", "span_id", "parent_span_id", "trace_state", "name", "kind", "start_time_unix_nano",
    "end_time_unix_nano", "status", "attributes", "events", "links",
)  # fmt: skip


# ---- attribute values -------------------------------------------------------------------------


def _text(plain: object, typ: str) -> str:
    """The column text of a top-level value whose plain form is `plain`."""
    if typ == "string" or typ == "bytes":
        return plain  # type: ignore[return-value]
    if typ == "double":
        return repr(plain)
    if typ == "bool":
        return "true" if plain else "false"
    if typ == "empty":
        return ""
    if typ == "int":
        return str(plain)
    return json.dumps(plain, separators=(",", ":"), ensure_ascii=False)


def _pb_plain(v: AnyValue) -> tuple[object, str]:
    """A real AnyValue as (plain JSON-able value, OTLP type); bytes become base64 text."""
    which = v.WhichOneof("value")
    if which is None:
        return None, "empty"
    if which == "array_value":
        return [_pb_plain(x)[0] for x in v.array_value.values], "array"
    if which == "kvlist_value":
        return {kv.key: _pb_plain(kv.value)[0] for kv in v.kvlist_value.values}, "kvlist"
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode(), "bytes"
    return getattr(v, which), which[:-6]  # string_value -> "string", int_value -> "int", ...


def _raw_value(raw: bytes) -> tuple[str, str | None]:
    """Text and type of one AnyValue encoding; short strings, doubles and bools decoded by hand."""
    n = len(raw)
    if n >= 2:
        tag, b1 = raw[0], raw[1]
        if tag == 0x0A:  # string_value: tag, varint length, UTF-8 (1- or 2-byte length covers 16 KiB)
            if b1 == n - 2 < 0x80:
                return raw[2:].decode(), None
            if n > 2 and b1 >= 0x80 and raw[2] < 0x80 and (b1 & 0x7F) | (raw[2] << 7) == n - 3:
                return raw[3:].decode(), None
        elif tag == 0x21 and n == 9:
            return repr(_DOUBLE.unpack_from(raw, 1)[0]), "double"
        elif tag == 0x10 and n == 2 and b1 < 2:
            return ("true" if b1 else "false"), "bool"
    elif n == 0:
        return "", "empty"
    plain, typ = _pb_plain(AnyValue.FromString(raw))
    return _text(plain, typ), None if typ == "string" else typ


def _raw_kv(raw: bytes) -> _Attr:
    """Key, text and type of one KeyValue encoding; the canonical short form is split by hand."""
    n = len(raw)
    if n >= 4 and raw[0] == 0x0A and raw[1] < 0x80:
        v = raw[1] + 4  # where the AnyValue starts: tag, len, key, tag, len
        if v <= n and raw[v - 2] == 0x12 and raw[v - 1] == n - v < 0x80:
            return (raw[2 : v - 2].decode(), *_raw_value(raw[v:]))
    kv = _LITE["KeyValue"].FromString(raw)
    return (kv.key, *_raw_value(kv.value))


# ---- attribute columns -----------------------------------------------------------------------


def _maps(keys: Any, values: Any, types: Any, offsets: Any) -> tuple[Any, Any]:
    """The attribute Map column and its type Map column (non-string keys only) from flat arrays."""
    attrs = pa.MapArray.from_arrays(offsets, keys, values)
    typed = pc.is_valid(types)
    if types.null_count == len(types):
        zeros = pa.repeat(pa.scalar(0, pa.int32()), len(offsets))
        return attrs, pa.MapArray.from_arrays(zeros, pa.array([], pa.string()), pa.array([], pa.string()))
    ends = pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum(typed.cast(pa.int64()))])
    type_offsets = ends.take(offsets).cast(pa.int32())
    return attrs, pa.MapArray.from_arrays(type_offsets, keys.filter(typed), types.filter(typed))


def _attr_maps(attrs: Sequence[_Attr], offsets: Sequence[int]) -> tuple[Any, Any]:
    keys, values, types = zip(*attrs, strict=True) if attrs else ((), (), ())
    return _maps(
        pa.array(keys, pa.string()),
        pa.array(values, pa.string()),
        pa.array(types, pa.string()),
        pa.array(offsets, pa.int32()),
    )


def _raw_attr_maps(per_item: Sequence[Sequence[bytes]]) -> tuple[Any, Any]:
    """Map columns from raw KeyValue encodings, one list per row; decodes each distinct one once."""
    lists = pa.array(per_item, pa.list_(pa.binary()))
    encoded = lists.values.dictionary_encode()
    keys, values, types = (
        zip(*map(_raw_kv, encoded.dictionary.to_pylist()), strict=True) if len(encoded) else ((), (), ())
    )
    idx = encoded.indices
    return _maps(
        pa.array(keys, pa.string()).take(idx),
        pa.array(values, pa.string()).take(idx),
        pa.array(types, pa.string()).take(idx),
        lists.offsets,
    )


# ---- shared assembly -------------------------------------------------------------------------


@dataclass(slots=True)
class _Spans:
    """What a decoder collected, span-aligned unless noted; `_assemble` turns it into columns."""

    json: bool
    trace_id: Sequence[bytes] = ()
    span_id: Sequence[bytes] = ()
    parent_span_id: Sequence[bytes] = ()
    trace_state: Sequence[str] = ()
    name: Sequence[str] = ()
    kind: Sequence[int] = ()
    start: Sequence[int] = ()
    end: Sequence[int] = ()
    status_code: Any = None  # pa.Array of ints
    status_message: Any = None
    attrs: tuple[Any, Any] = (None, None)
    resources: list[list[_Attr]] = field(default_factory=list)  # one per resource
    scopes: list[tuple[int, int, str, str, int]] = field(
        default_factory=list
    )  # resource, index, name, version, first span
    ev_offsets: Sequence[int] = (0,)
    ev_time: list[int] = field(default_factory=list)  # one per event
    ev_name: list[str] = field(default_factory=list)
    ev_attrs: tuple[Any, Any] = (None, None)
    link_offsets: Sequence[int] = (0,)
    link_trace_id: list[bytes] = field(default_factory=list)  # one per link
    link_span_id: list[bytes] = field(default_factory=list)
    link_trace_state: list[str] = field(default_factory=list)
    link_attrs: tuple[Any, Any] = (None, None)
    problems: dict[int, list[str]] = field(default_factory=dict)  # found while reading, by span


def _code_names(codes: Any, names: Any) -> Any:
    """Enum names for integer codes; codes outside the table read as the first (unspecified) name."""
    known = pc.and_(pc.greater_equal(codes, 0), pc.less(codes, len(names)))
    return names.take(pc.if_else(known, codes, 0))


def _id_hint(n: int, size: int) -> str:
    if n == 2 * size:
        return " (hex text? send the raw bytes)"
    return " (base64 text? send the raw bytes)" if n == (size + 2) // 3 * 4 else ""


def _span_problems(s: _Spans, i: int) -> list[str]:
    """Why span `i` is invalid, one phrase per problem; mirrors the masks in `_assemble`."""
    camel = {"trace_id": "traceId", "span_id": "spanId", "parent_span_id": "parentSpanId"}
    out: list[str] = []
    for fname, size in (("trace_id", 16), ("span_id", 8), ("parent_span_id", 8)):
        v, label = getattr(s, fname)[i], camel[fname] if s.json else fname
        if fname == "parent_span_id" and not v:
            continue
        if len(v) != size:
            out.append(f"{label} must be {size} bytes, got {len(v)}{_id_hint(len(v), size)}")
        elif fname != "parent_span_id" and not any(v):
            out.append(f"{label} is all zeros, which is not a valid id")
    start, end = s.start[i], s.end[i]
    start_l, end_l = (
        ("startTimeUnixNano", "endTimeUnixNano") if s.json else ("start_time_unix_nano", "end_time_unix_nano")
    )
    if start == 0:
        out.append(f"{start_l} is 0; set it to the span's start in nanoseconds since the Unix epoch")
    for label, t in ((start_l, start), (end_l, end)):
        if t > _I64_MAX:
            out.append(f"{label} {t} is past the year 2262; it must be nanoseconds since the Unix epoch")
    if end < start:
        out.append(f"{end_l} {end} is before {start_l} {start}")
    for j in range(s.link_offsets[i], s.link_offsets[i + 1]):
        for fname, ids, size in (("trace_id", s.link_trace_id, 16), ("span_id", s.link_span_id, 8)):
            if len(ids[j]) != size and not s.json:
                n = len(ids[j])
                out.append(f"links[{j - s.link_offsets[i]}].{fname} must be {size} bytes, got {n}{_id_hint(n, size)}")
    return out


def _rejections(s: _Spans, bad: list[int], total: int) -> str:
    firsts = [sc[4] for sc in s.scopes]
    problems: list[str] = []
    for i in bad:
        ri, si, _, _, first = s.scopes[bisect_right(firsts, i) - 1]
        if s.json:
            where = f"resourceSpans[{ri}].scopeSpans[{si}].spans[{i - first}]."
        else:
            where = f"span {i - first} (resource {ri}, scope {si}): "
        problems += [
            p if p.startswith("resourceSpans[") else where + p for p in s.problems.get(i) or _span_problems(s, i)
        ]
        if len(problems) > 5:
            break
    more = f"; and more ({len(bad)} spans rejected in all)" if len(problems) > 5 else ""
    return f"rejected {len(bad)} of {total} spans: " + "; ".join(problems[:5]) + more


def _assemble(s: _Spans) -> DecodeResult:
    n = len(s.trace_id)
    trace_id = pa.array(map(bytes.hex, s.trace_id), pa.string(), size=n)
    span_id = pa.array(map(bytes.hex, s.span_id), pa.string(), size=n)
    parent = pa.array(map(bytes.hex, s.parent_span_id), pa.string(), size=n)
    start = pa.array(s.start, pa.uint64())
    end = pa.array(s.end, pa.uint64())

    # Validity, vectorised; the rare invalid span is then explained by _span_problems.
    ok = pc.and_(pc.equal(pc.binary_length(trace_id), 32), pc.not_equal(trace_id, "0" * 32))
    ok = pc.and_(ok, pc.and_(pc.equal(pc.binary_length(span_id), 16), pc.not_equal(span_id, "0" * 16)))
    ok = pc.and_(ok, pc.is_in(pc.binary_length(parent), pa.array([0, 16], pa.int32())))
    ok = pc.and_(ok, pc.and_(pc.greater(start, 0), pc.less_equal(start, end)))
    ok = pc.and_(ok, pc.less_equal(end, _I64_MAX))
    bad_links = {
        bisect_right(s.link_offsets, j) - 1
        for j, (t, sp) in enumerate(zip(s.link_trace_id, s.link_span_id, strict=True))
        if len(t) != 16 or len(sp) != 8
    }
    if s.problems or bad_links:
        flagged = s.problems.keys() | bad_links
        ok = pc.and_(ok, pa.array([i not in flagged for i in range(n)]))
    bad = pc.indices_nonzero(pc.invert(ok)).to_pylist()
    message = _rejections(s, bad, n) if bad else ""

    # Resource and scope columns: one value per resource / scope, taken out to every span.
    counts = [b[4] - a[4] for a, b in zip(s.scopes, [*s.scopes[1:], (0, 0, "", "", n)], strict=True)]
    res_idx = pa.array(chain.from_iterable(map(repeat, (sc[0] for sc in s.scopes), counts)), pa.int32(), size=n)
    scope_idx = pa.array(chain.from_iterable(map(repeat, range(len(counts)), counts)), pa.int32(), size=n)
    service_names, service_versions = [], []
    for attrs in s.resources:
        found = {k: v for k, v, _ in reversed(attrs)}  # reversed: the first of duplicate keys wins
        service_names.append(found.get("service.name", "unknown_service"))
        service_versions.append(found.get("service.version", ""))
    res_attrs, res_types = _attr_maps(
        list(chain.from_iterable(s.resources)), list(accumulate(map(len, s.resources), initial=0))
    )

    def scope_col(k: int) -> Any:
        return pa.array([sc[k] for sc in s.scopes], pa.string()).take(scope_idx)

    ev = pa.array(s.ev_offsets, pa.int32())
    lk = pa.array(s.link_offsets, pa.int32())
    columns = [
        start.view(pa.timestamp("ns", tz="UTC")),
        trace_id,
        span_id,
        parent,
        pa.array(s.trace_state, pa.string()),
        pa.array(s.name, pa.string()),
        _code_names(pa.array(s.kind, pa.int64()), _KINDS),
        pa.array(service_names, pa.string()).take(res_idx),
        pa.array(service_versions, pa.string()).take(res_idx),
        res_attrs.take(res_idx),
        res_types.take(res_idx),
        scope_col(2),
        scope_col(3),
        *s.attrs,
        pc.subtract(end, start),  # wraps for invalid spans only, and those are filtered out
        _code_names(s.status_code, _STATUSES),
        s.status_message,
        pa.ListArray.from_arrays(ev, pa.array(s.ev_time, pa.uint64()).view(pa.timestamp("ns", tz="UTC"))),
        pa.ListArray.from_arrays(ev, pa.array(s.ev_name, pa.string())),
        pa.ListArray.from_arrays(ev, s.ev_attrs[0]),
        pa.ListArray.from_arrays(ev, s.ev_attrs[1]),
        pa.ListArray.from_arrays(lk, pa.array(map(bytes.hex, s.link_trace_id), pa.string())),
        pa.ListArray.from_arrays(lk, pa.array(map(bytes.hex, s.link_span_id), pa.string())),
        pa.ListArray.from_arrays(lk, pa.array(s.link_trace_state, pa.string())),
        pa.ListArray.from_arrays(lk, s.link_attrs[0]),
        pa.ListArray.from_arrays(lk, s.link_attrs[1]),
    ]
    table = pa.Table.from_arrays(columns, schema=SPANS_ARROW_SCHEMA)
    if bad:
        table = table.filter(ok)
    return DecodeResult(RowBatch("spans", table), rejected=len(bad), error_message=message)


# ---- protobuf --------------------------------------------------------------------------------


def _pb_error(body: bytes, err: Exception) -> DecodeError:
    hint = ""
    if body[:1] in (b"{", b"["):
        hint = "; it looks like JSON: send it as application/json"
    elif body[:2] == b"\x1f\x8b":
        hint = "; it looks gzip-compressed: set Content-Encoding: gzip"
    what = "a string is not valid UTF-8" if isinstance(err, UnicodeDecodeError) else "malformed protobuf"
    return DecodeError(f"body ({len(body)} bytes) is not a valid ExportTraceServiceRequest: {what} ({err}){hint}")


def decode_traces_protobuf(body: bytes) -> DecodeResult:
    """Rows of the spans table from a protobuf `ExportTraceServiceRequest`."""
    try:
        return _decode_protobuf(body)
    except (message.DecodeError, UnicodeDecodeError) as err:
        raise _pb_error(body, err) from None


def _decode_protobuf(body: bytes) -> DecodeResult:
    req: Any = _LITE["Request"].FromString(body)
    s = _Spans(json=False)
    rows: list[tuple[Any, ...]] = []
    for ri, rs in enumerate(req.resource_spans):
        s.resources.append([_raw_kv(raw) for raw in rs.resource.attributes])
        for si, ss in enumerate(rs.scope_spans):
            s.scopes.append((ri, si, ss.scope.name, ss.scope.version, len(rows)))
            rows.extend(map(_SPAN_FIELDS, ss.spans))
    cols: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * 12
    s.trace_id, s.span_id, s.parent_span_id, s.trace_state, s.name, s.kind, s.start, s.end = cols[:8]
    status, attrs, events, links = cols[8:]

    # Statuses repeat (mostly b"" or code 1/2): decode each distinct encoding once.
    encoded = pa.array(status, pa.binary()).dictionary_encode()
    distinct = [_LITE["Status"].FromString(raw) for raw in encoded.dictionary.to_pylist()]
    s.status_code = pa.array([st.code for st in distinct], pa.int64()).take(encoded.indices)
    s.status_message = pa.array([st.message for st in distinct], pa.string()).take(encoded.indices)
    s.attrs = _raw_attr_maps([a[:] for a in attrs])

    s.ev_offsets = list(accumulate(map(len, events), initial=0))
    parsed = [_LITE["Event"].FromString(raw) for raw in chain.from_iterable(events)]
    s.ev_time = [e.time_unix_nano for e in parsed]
    s.ev_name = [e.name for e in parsed]
    s.ev_attrs = _raw_attr_maps([e.attributes[:] for e in parsed])

    s.link_offsets = list(accumulate(map(len, links), initial=0))
    parsed = [_LITE["Link"].FromString(raw) for raw in chain.from_iterable(links)]
    s.link_trace_id = [lk.trace_id for lk in parsed]
    s.link_span_id = [lk.span_id for lk in parsed]
    s.link_trace_state = [lk.trace_state for lk in parsed]
    s.link_attrs = _raw_attr_maps([lk.attributes[:] for lk in parsed])
    return _assemble(s)


# ---- OTLP/JSON -------------------------------------------------------------------------------


def _kind(v: object) -> str:
    return (
        "null" if v is None else {dict: "object", list: "array", str: "string", bool: "boolean"}.get(type(v), "number")
    )


def _obj(v: object, path: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise DecodeError(f"{path}: expected an object, got {_kind(v)}")
    return v


def _list(d: dict[str, Any], key: str, path: str) -> list[Any]:
    v = d.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise DecodeError(f"{path}.{key}: expected an array, got {_kind(v)}")
    return v


def _str(d: dict[str, Any], key: str, path: str) -> str:
    v = d.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise DecodeError(f"{path}.{key}: expected a string, got {_kind(v)}")
    return v


def _int(v: object, path: str, lo: int, hi: int) -> int:
    """An int64/uint64: a JSON number or a decimal string, as protobuf's JSON mapping allows."""
    if isinstance(v, str) and _DECIMAL.fullmatch(v):
        i = int(v)
    elif isinstance(v, int) and not isinstance(v, bool):
        i = v
    elif isinstance(v, float) and v.is_integer():
        i = int(v)
    else:
        raise DecodeError(f"{path}: expected an integer (number or decimal string), got {v!r:.40}")
    if not lo <= i <= hi:
        raise DecodeError(f"{path}: {i} is out of range")
    return i


def _time(d: dict[str, Any], key: str, path: str) -> int:
    v = d.get(key)
    return 0 if v is None else _int(v, f"{path}.{key}", 0, 2**64 - 1)


def _enum(v: object, names: dict[str, int], path: str) -> int:
    if isinstance(v, str) and v in names:
        return names[v]
    return 0 if v is None else _int(v, path, -(2**31), 2**31 - 1)


def _hex_id(v: object, size: int, path: str, problems: list[str]) -> bytes:
    """A hex id; a malformed one becomes a problem of the span (placeholder zeros), not an error."""
    if isinstance(v, str) and len(v) == 2 * size:
        try:
            raw = bytes.fromhex(v)
        except ValueError:
            raw = b""
        if len(raw) == size:
            return raw
    hint = ""
    if isinstance(v, str) and len(v) == (size + 2) // 3 * 4:
        try:
            base64.b64decode(v, validate=True)
            hint = " (OTLP/JSON ids are hex, not base64)"
        except ValueError:
            pass
    problems.append(f"{path}: expected {2 * size} hex characters, got {v!r:.60}{hint}")
    return bytes(size)


def _json_plain(v: object, path: str) -> tuple[object, str]:
    """An OTLP/JSON AnyValue as (plain JSON-able value, OTLP type); unknown keys are ignored."""
    for key, x in _obj(v, path).items():
        if x is None:
            continue
        if key == "stringValue" and isinstance(x, str):
            return x, "string"
        if key == "intValue":
            return _int(x, f"{path}.intValue", -(2**63), _I64_MAX), "int"
        if key == "doubleValue" and isinstance(x, int | float | str) and not isinstance(x, bool):
            try:
                return float(x), "double"  # proto3 JSON also spells doubles "NaN", "Infinity", "1.5"
            except ValueError:
                pass
        elif key == "boolValue" and isinstance(x, bool):
            return x, "bool"
        elif key == "bytesValue" and isinstance(x, str):
            try:  # standard or URL-safe alphabet, padding optional; always written back standard
                raw = base64.b64decode(x.replace("-", "+").replace("_", "/") + "=" * (-len(x) % 4), validate=True)
            except ValueError:
                raise DecodeError(f"{path}.bytesValue: not base64: {x!r:.40}") from None
            return base64.b64encode(raw).decode(), "bytes"
        elif key == "arrayValue":
            vals = _list(_obj(x, f"{path}.arrayValue"), "values", f"{path}.arrayValue")
            return [_json_plain(e, f"{path}.arrayValue.values[{i}]")[0] for i, e in enumerate(vals)], "array"
        elif key == "kvlistValue":
            kvs = _json_kvs(_list(_obj(x, f"{path}.kvlistValue"), "values", f"{path}.kvlistValue"), path)
            return {k: p for k, p, _ in kvs}, "kvlist"
        if key in ("stringValue", "doubleValue", "boolValue", "bytesValue"):
            raise DecodeError(f"{path}.{key}: unexpected {_kind(x)} {x!r:.40}")
    return None, "empty"


def _json_kvs(kvs: list[Any], path: str) -> list[tuple[str, object, str]]:
    out = []
    for i, kv in enumerate(kvs):
        p = f"{path}[{i}]"
        plain, typ = _json_plain(_obj(kv, p).get("value"), f"{p}.value")
        out.append((_str(kv, "key", p), plain, typ))
    return out


def _json_attrs(d: dict[str, Any], path: str) -> list[_Attr]:
    kvs = _json_kvs(_list(d, "attributes", path), f"{path}.attributes")
    return [(k, _text(p, t), None if t == "string" else t) for k, p, t in kvs]


def decode_traces_json(body: bytes) -> DecodeResult:
    """Rows of the spans table from an OTLP/JSON `ExportTraceServiceRequest` (hex ids, int enums)."""
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as err:
        raise DecodeError(f"body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except UnicodeDecodeError as err:
        raise DecodeError(f"body is not UTF-8 JSON: {err}") from None
    if not isinstance(doc, dict):
        raise DecodeError(f"body must be a JSON object with resourceSpans, got {_kind(doc)}")
    s = _Spans(json=True)
    cols: list[list[Any]] = [[] for _ in range(10)]
    attrs: list[_Attr] = []
    ev_attrs: list[_Attr] = []
    link_attrs: list[_Attr] = []
    offsets: list[list[int]] = [[0], [0], [0], [0], [0]]  # span attrs, events, event attrs, links, link attrs
    for ri, rs in enumerate(_list(doc, "resourceSpans", "")):
        rp = f"resourceSpans[{ri}]"
        rs = _obj(rs, rp)
        s.resources.append(_json_attrs(_obj(rs.get("resource"), f"{rp}.resource"), f"{rp}.resource"))
        for si, ss in enumerate(_list(rs, "scopeSpans", rp)):
            sp_path = f"{rp}.scopeSpans[{si}]"
            ss = _obj(ss, sp_path)
            scope = _obj(ss.get("scope"), f"{sp_path}.scope")
            s.scopes.append((ri, si, _str(scope, "name", sp_path), _str(scope, "version", sp_path), len(cols[0])))
            for k, sp in enumerate(_list(ss, "spans", sp_path)):
                p = f"{sp_path}.spans[{k}]"
                sp = _obj(sp, p)
                problems: list[str] = []
                parent = sp.get("parentSpanId")
                status = _obj(sp.get("status"), f"{p}.status")
                values = (
                    _hex_id(sp.get("traceId"), 16, f"{p}.traceId", problems),
                    _hex_id(sp.get("spanId"), 8, f"{p}.spanId", problems),
                    _hex_id(parent, 8, f"{p}.parentSpanId", problems) if parent else b"",
                    _str(sp, "traceState", p),
                    _str(sp, "name", p),
                    _enum(sp.get("kind"), _KIND_ENUM, f"{p}.kind"),
                    _time(sp, "startTimeUnixNano", p),
                    _time(sp, "endTimeUnixNano", p),
                    _enum(status.get("code"), _STATUS_ENUM, f"{p}.status.code"),
                    _str(status, "message", f"{p}.status"),
                )
                attrs += _json_attrs(sp, p)
                offsets[0].append(len(attrs))
                for j, ev in enumerate(_list(sp, "events", p)):
                    ep = f"{p}.events[{j}]"
                    ev = _obj(ev, ep)
                    s.ev_time.append(_time(ev, "timeUnixNano", ep))
                    s.ev_name.append(_str(ev, "name", ep))
                    ev_attrs += _json_attrs(ev, ep)
                    offsets[2].append(len(ev_attrs))
                offsets[1].append(len(s.ev_time))
                for j, lk in enumerate(_list(sp, "links", p)):
                    lp = f"{p}.links[{j}]"
                    lk = _obj(lk, lp)
                    s.link_trace_id.append(_hex_id(lk.get("traceId"), 16, f"{lp}.traceId", problems))
                    s.link_span_id.append(_hex_id(lk.get("spanId"), 8, f"{lp}.spanId", problems))
                    s.link_trace_state.append(_str(lk, "traceState", lp))
                    link_attrs += _json_attrs(lk, lp)
                    offsets[4].append(len(link_attrs))
                offsets[3].append(len(s.link_trace_id))
                if problems:
                    s.problems[len(cols[0])] = problems
                for col, value in zip(cols, values, strict=True):
                    col.append(value)
    s.trace_id, s.span_id, s.parent_span_id, s.trace_state, s.name, s.kind, s.start, s.end = cols[:8]
    s.status_code = pa.array(cols[8], pa.int64())
    s.status_message = pa.array(cols[9], pa.string())
    s.attrs = _attr_maps(attrs, offsets[0])
    s.ev_offsets, s.ev_attrs = offsets[1], _attr_maps(ev_attrs, offsets[2])
    s.link_offsets, s.link_attrs = offsets[3], _attr_maps(link_attrs, offsets[4])
    return _assemble(s)
