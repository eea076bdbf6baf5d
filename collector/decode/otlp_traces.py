"""Decode OTLP trace export requests (protobuf and JSON) into rows of the spans table.

Both decoders are pure: bytes in, a `DecodeResult` whose rows have exactly `SPANS_ARROW_SCHEMA`.
Invalid spans are dropped and counted (OTLP partial success); an unreadable body raises `DecodeError`.

Why the protobuf path looks unusual: through the generated classes every attribute costs a
KeyValue wrapper, an AnyValue wrapper and a `WhichOneof`, which caps decoding near 70k spans/s.
So at import we build, with `descriptor_pb2`, a *wire-compatible* "lite" copy of the trace
messages in which `repeated KeyValue` fields, `Span.events`, `Span.links` and `Span.status` are
declared `bytes`. A message and a bytes field share one wire type, so upb parses the same body but
hands back each attribute as its raw KeyValue encoding: no per-attribute objects. Raw encodings
repeat a lot (same key, same value), so Arrow dictionary-encodes them, Python decodes each distinct
one once (the common layouts by hand, bools/ints/doubles in one parse of their concatenation, the rest
through the real `AnyValue`), and `take` spreads the results back. Map columns are built from flat
keys, values and offsets; span fields come out column by column with `map(attrgetter(...))`. Only
rare parts (events, links, resources) are parsed item by item.
"""

from __future__ import annotations

import base64
import json
import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain, count
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
_KIND_ENUM = {f"SPAN_KIND_{name.upper()}": i for i, name in enumerate(_KINDS.to_pylist())}  # enum names, as JSON may
_STATUS_ENUM = {f"STATUS_CODE_{name.upper()}": i for i, name in enumerate(_STATUSES.to_pylist())}
_TS = pa.timestamp("ns", tz="UTC")
_I64_MAX = 2**63 - 1
_SCALAR_TAGS = {0x10: "bool", 0x18: "int", 0x21: "double"}  # AnyValue fields 2, 3, 4 with their wire types
_DECIMAL = re.compile(r"-?[0-9]{1,20}")
_NO_STR = pa.array([], pa.string())
_ZERO = pa.scalar(0, pa.int32())
_RAW_LISTS = pa.list_(pa.dictionary(pa.int32(), pa.binary()))
_NO_MAPS = (pa.array([], pa.map_(pa.string(), pa.string())),) * 2
_PB_LABELS = ("trace_id", "span_id", "parent_span_id", "start_time_unix_nano", "end_time_unix_nano")
_JSON_LABELS = ("traceId", "spanId", "parentSpanId", "startTimeUnixNano", "endTimeUnixNano")
_Attr = tuple[str, str, str | None]  # key, value as text, OTLP type (None for a string)


def _lite_classes() -> dict[str, Any]:
    """The lite messages, as "name=number:type" with * for repeated; numbers as in trace.proto."""
    layout = {
        "Request": "*resource_spans=1:ResourceSpans",
        "ResourceSpans": "resource=1:Resource *scope_spans=2:ScopeSpans",
        "Resource": "*attributes=1:bytes",
        "ScopeSpans": "scope=1:Scope *spans=2:Span",
        "Scope": "name=1:string version=2:string",
        "Span": "trace_id=1:bytes span_id=2:bytes trace_state=3:string parent_span_id=4:bytes name=5:string"
        " kind=6:int32 start_time_unix_nano=7:fixed64 end_time_unix_nano=8:fixed64 *attributes=9:bytes"
        " *events=11:bytes *links=13:bytes status=15:bytes",
        "Event": "time_unix_nano=1:fixed64 name=2:string *attributes=3:bytes",
        "Link": "trace_id=1:bytes span_id=2:bytes trace_state=3:string *attributes=4:bytes",
        "Status": "message=2:string code=3:int32",  # enums are int32 on the wire
        "KeyValue": "key=1:string value=2:bytes",
        # AnyValue's scalar fields made repeated: the parse of many such AnyValues, concatenated
        "AnyValues": "*bool_value=2:bool *int_value=3:int64 *double_value=4:double",
    }
    fdp = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(name="vigil/lite_trace.proto", package="vigil.lite", syntax="proto3")
    for name, fields in layout.items():
        msg = fd.message_type.add(name=name)
        for spec in fields.split():
            fname, number, typ = re.split("[=:]", spec.lstrip("*"))
            f = msg.field.add(
                name=fname, number=int(number), label=fdp.LABEL_REPEATED if spec[0] == "*" else fdp.LABEL_OPTIONAL
            )
            if typ in layout:
                f.type, f.type_name = fdp.TYPE_MESSAGE, f".vigil.lite.{typ}"
            else:
                f.type = getattr(fdp, f"TYPE_{typ.upper()}")
    pool = descriptor_pool.DescriptorPool()  # a private pool: the real OTLP names stay untouched
    pool.Add(fd)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"vigil.lite.{n}")) for n in layout}


_LITE = _lite_classes()
_SPAN_FIELDS = [
    attrgetter(name)
    for name in (
        *("trace_id", "span_id", "parent_span_id", "trace_state", "name", "kind", "start_time_unix_nano"),
        *("end_time_unix_nano", "status", "events", "links"),
    )
]


# ---- attribute values ------------------------------------------------------------------------


def _text(plain: object, typ: str) -> str:
    """The column text of a top-level value given as (plain JSON-able value, OTLP type)."""
    if typ in ("string", "bytes"):
        return str(plain)
    if typ in ("int", "double"):
        return repr(plain)
    if typ == "bool":
        return "true" if plain else "false"
    return "" if typ == "empty" else json.dumps(plain, separators=(",", ":"), ensure_ascii=False)


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
    return getattr(v, which), which.removesuffix("_value")


def _raw_value(raw: bytes) -> tuple[str, str | None]:
    """Text and type (None for a string) of one AnyValue encoding, through the real class."""
    plain, typ = _pb_plain(AnyValue.FromString(raw))
    return _text(plain, typ), None if typ == "string" else typ


def _raw_kv(raw: bytes) -> _Attr:
    """Key, text and type of one KeyValue encoding (the general, slow path)."""
    kv = _LITE["KeyValue"].FromString(raw)
    return (kv.key, *_raw_value(kv.value))


def _doubles_text(floats: list[float]) -> list[str]:
    """repr() of many floats. Arrow's float-to-string gives the same shortest round-trip digits as
    repr, and the same layout for 0 and 1e-4 <= |x| < 1e10 but for repr's ".0" on integers
    (property-tested); repr does the rest. Cheaper than repr on each."""
    out: list[str] = pa.array(floats, pa.float64()).cast(pa.string()).to_pylist()
    for i, text in enumerate(out):
        if "e" in text or "n" in text or text.startswith(("0.0000", "-0.0000")):  # exponent, inf, nan, tiny
            out[i] = repr(floats[i])
        elif "." not in text:
            out[i] = text + ".0"
    return out


def _scalar_texts(raws: list[bytes], at: dict[str, list[int]], texts: list[str]) -> None:
    """Fill in `texts` at `at[type]` from bool, int and double AnyValue encodings, each exactly one
    field. Concatenated, they parse in one call as a message of repeated fields, in order, so the
    i-th value of a type belongs at the i-th position of that type."""
    cols = _LITE["AnyValues"].FromString(b"".join(raws))
    values: dict[str, Iterable[str]] = {
        "bool": ("true" if b else "false" for b in cols.bool_value),
        "int": map(str, cols.int_value),
        "double": _doubles_text(cols.double_value[:]),
    }
    for t, positions in at.items():
        for i, text in zip(positions, values[t], strict=True):
            texts[i] = text


def _decode_kvs(raws: list[bytes]) -> tuple[list[str], list[str], list[str | None]]:
    """Keys, texts and types of KeyValue encodings. The canonical layout, ``0A len key 12 len`` then
    ``0A len utf8`` or a bool/int/double field, with 1-byte lengths, is cut by hand in one loop."""
    keys: list[str] = []
    texts: list[str] = []
    types: list[str | None] = []
    scalars: list[bytes] = []
    at: dict[str, list[int]] = {"bool": [], "int": [], "double": []}
    for raw in raws:
        n = len(raw)
        v = raw[1] + 4 if n > 5 and raw[0] == 0x0A else n  # where the AnyValue starts
        if v < n and raw[1] < 0x80 and raw[v - 2] == 0x12 and raw[v - 1] == n - v < 0x80:
            tag = raw[v]
            if tag == 0x0A and raw[v + 1] == n - v - 2:
                keys.append(raw[2 : v - 2].decode())
                texts.append(raw[v + 2 :].decode())
                types.append(None)
                continue
            typ = _SCALAR_TAGS.get(tag)
            # exactly one field: a fixed64 of 8 bytes, or one varint (only its last byte < 0x80)
            if typ and (n - v == 9 if tag == 0x21 else raw[-1] < 0x80 and min(raw[v + 1 : -1], default=0x80) >= 0x80):
                at[typ].append(len(keys))
                scalars.append(raw[v:])
                keys.append(raw[2 : v - 2].decode())
                texts.append("")  # filled in below, all at once
                types.append(typ)
                continue
        key, text, typ = _raw_kv(raw)
        keys.append(key)
        texts.append(text)
        types.append(typ)
    if scalars:
        _scalar_texts(scalars, at, texts)
    return keys, texts, types


# ---- attribute columns -----------------------------------------------------------------------


def _maps(keys: Any, values: Any, types: Any, offsets: Any) -> tuple[Any, Any]:
    """The attribute Map column and its type Map column (non-string keys only) from flat arrays."""
    attrs = pa.MapArray.from_arrays(offsets, keys, values)
    if types.null_count == len(types):
        return attrs, pa.MapArray.from_arrays(pa.repeat(_ZERO, len(offsets)), _NO_STR, _NO_STR)
    typed = pc.is_valid(types)
    ends = pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum(typed.cast(pa.int64()))])
    return attrs, pa.MapArray.from_arrays(ends.take(offsets).cast(pa.int32()), keys.filter(typed), types.filter(typed))


def _attr_maps(attrs: Sequence[_Attr], offsets: Sequence[int]) -> tuple[Any, Any]:
    """Map columns from decoded attributes, `offsets` delimiting each row's."""
    keys, values, types = (pa.array(c, pa.string()) for c in (zip(*attrs, strict=True) if attrs else ((), (), ())))
    return _maps(keys, values, types, pa.array(offsets, pa.int32()))


def _raw_attr_maps(per_row: Sequence[Sequence[bytes]]) -> tuple[Any, Any]:
    """Map columns from raw KeyValue encodings, one list per row; decodes each distinct one once."""
    lists = pa.array(per_row, _RAW_LISTS)  # dictionary-encoded while converting
    encoded = lists.values
    keys, values, types = (
        pa.array(c, pa.string()).take(encoded.indices) for c in _decode_kvs(encoded.dictionary.to_pylist())
    )
    return _maps(keys, values, types, lists.offsets)


# ---- shared assembly -------------------------------------------------------------------------


@dataclass(slots=True)
class _Spans:
    """What a decoder read, span-aligned unless noted; `_assemble` turns it into the table."""

    json: bool
    trace_id: Sequence[bytes] = ()
    span_id: Sequence[bytes] = ()
    parent_span_id: Sequence[bytes] = ()
    trace_state: Sequence[str] = ()
    name: Sequence[str] = ()
    kind: Sequence[int] = ()
    start: Sequence[int] = ()
    end: Sequence[int] = ()
    status_code: Any = None  # Arrow arrays
    status_message: Any = None
    attrs: tuple[Any, Any] = _NO_MAPS
    resources: list[list[_Attr]] = field(default_factory=list)  # per resource
    # per scope: resource index, index in the resource, name, version, first span
    scopes: list[tuple[int, int, str, str, int]] = field(default_factory=list)
    ev_offsets: Sequence[int] = (0,)  # per span, into the per-event lists
    ev_time: list[int] = field(default_factory=list)
    ev_name: list[str] = field(default_factory=list)
    ev_attrs: tuple[Any, Any] = _NO_MAPS
    link_offsets: Sequence[int] = (0,)
    link_trace_id: list[bytes] = field(default_factory=list)
    link_span_id: list[bytes] = field(default_factory=list)
    link_trace_state: list[str] = field(default_factory=list)
    link_attrs: tuple[Any, Any] = _NO_MAPS
    problems: dict[int, list[str]] = field(default_factory=dict)  # found while reading, by span


def _names(codes: Any, names: Any) -> Any:
    """Enum names for integer codes; codes outside the table read as the first (unspecified) name."""
    try:
        return names.take(codes)
    except IndexError:
        return names.take(pc.if_else(pc.and_(pc.greater_equal(codes, 0), pc.less(codes, len(names))), codes, 0))


def _id_problem(label: str, v: bytes, size: int) -> str:
    hint = {2 * size: " (hex text? send the raw bytes)", (size + 2) // 3 * 4: " (base64 text? send the raw bytes)"}
    return f"{label} must be {size} bytes, got {len(v)}{hint.get(len(v), '')}"


def _span_problems(s: _Spans, i: int) -> list[str]:
    """Why span `i` is invalid, one phrase per problem (the rules of `_assemble`'s check)."""
    labels = _JSON_LABELS if s.json else _PB_LABELS
    out: list[str] = []
    for label, v, size in zip(labels, (s.trace_id[i], s.span_id[i], s.parent_span_id[i]), (16, 8, 8), strict=False):
        if len(v) != size and (v or label != labels[2]):
            out.append(_id_problem(label, v, size))
        elif v == bytes(size) and label != labels[2]:
            out.append(f"{label} is all zeros, which is not a valid id")
    start, end = s.start[i], s.end[i]
    if start == 0:
        out.append(f"{labels[3]} is 0 (it must be the span's start, in nanoseconds since the Unix epoch)")
    for label, t in ((labels[3], start), (labels[4], end)):
        if t > _I64_MAX:
            out.append(f"{label} {t} is after the year 2262 (nanoseconds since the Unix epoch expected)")
    if end < start:
        out.append(f"{labels[4]} {end} is before {labels[3]} {start}")
    first = s.link_offsets[i]
    for j in range(first, s.link_offsets[i + 1]):
        for label, v, size in (("trace_id", s.link_trace_id[j], 16), ("span_id", s.link_span_id[j], 8)):
            if len(v) != size:
                out.append(_id_problem(f"links[{j - first}].{label}", v, size))
    return out


def _rejections(s: _Spans, bad: list[int]) -> str:
    firsts = [sc[4] for sc in s.scopes]
    problems: list[str] = []
    for i in bad:
        ri, si, _, _, first = s.scopes[bisect_right(firsts, i) - 1]
        if s.json:
            where = f"resourceSpans[{ri}].scopeSpans[{si}].spans[{i - first}]."
        else:
            where = f"span {i - first} (resource {ri}, scope {si}): "
        problems += s.problems.get(i) or [where + p for p in _span_problems(s, i)]
        if len(problems) > 5:
            break
    more = "; and more" if len(problems) > 5 else ""
    return f"rejected {len(bad)} of {len(s.trace_id)} spans: " + "; ".join(problems[:5]) + more


def _hex(ids: Sequence[bytes], size: int, all_valid: bool) -> Any:
    """Lowercase hex of each id."""
    joined = b"".join(ids)
    if not all_valid or len(joined) != size * len(ids):
        return pa.array(list(map(bytes.hex, ids)), pa.string())
    hexed = pa.py_buffer(joined.hex().encode())  # every id has `size` bytes: one hex() for all
    return pa.Array.from_buffers(pa.binary(2 * size), len(ids), [None, hexed]).cast(pa.string())


def _assemble(s: _Spans) -> DecodeResult:
    n = len(s.trace_id)
    z16, z8 = bytes(16), bytes(8)
    bad = [
        i
        for i, t, sp, p, a, b in zip(count(), s.trace_id, s.span_id, s.parent_span_id, s.start, s.end)
        if len(t) != 16 or t == z16 or len(sp) != 8 or sp == z8 or (p and len(p) != 8) or not 0 < a <= b <= _I64_MAX
    ]
    bad_links = [
        bisect_right(s.link_offsets, j) - 1
        for j, (t, sp) in enumerate(zip(s.link_trace_id, s.link_span_id, strict=True))
        if len(t) != 16 or len(sp) != 8
    ]
    if s.problems or bad_links:
        bad = sorted({*bad, *bad_links, *s.problems})

    # One value per resource or scope, spread out to their spans with take.
    firsts = pa.array([sc[4] for sc in s.scopes] + [n], pa.int32())
    scope_idx = pc.list_parent_indices(pa.ListArray.from_arrays(firsts, pa.nulls(n)))
    res_idx = pa.array([sc[0] for sc in s.scopes], pa.int32()).take(scope_idx)
    services, versions = [], []
    for attrs in s.resources:
        found = {k: v for k, v, _ in reversed(attrs)}  # reversed: the first of duplicate keys wins
        services.append(found.get("service.name", "unknown_service"))
        versions.append(found.get("service.version", ""))
    res_maps = _attr_maps(list(chain.from_iterable(s.resources)), list(accumulate(map(len, s.resources), initial=0)))
    start, end = pa.array(s.start, pa.uint64()), pa.array(s.end, pa.uint64())
    ev, lk = (pa.array(o, pa.int32()) if o[-1] else pa.repeat(_ZERO, n + 1) for o in (s.ev_offsets, s.link_offsets))
    columns = [
        start.view(_TS),  # invalid spans may wrap here and in Duration; they are filtered out below
        _hex(s.trace_id, 16, not bad),
        _hex(s.span_id, 8, not bad),
        _hex(s.parent_span_id, 8, not bad),
        pa.array(s.trace_state, pa.string()),
        pa.array(s.name, pa.string()),
        _names(pa.array(s.kind, pa.int64()), _KINDS),
        pa.array(services, pa.string()).take(res_idx),
        pa.array(versions, pa.string()).take(res_idx),
        *(m.take(res_idx) for m in res_maps),
        *(pa.array([sc[k] for sc in s.scopes], pa.string()).take(scope_idx) for k in (2, 3)),
        *s.attrs,
        pc.subtract(end, start),
        _names(s.status_code, _STATUSES),
        s.status_message,
        pa.ListArray.from_arrays(ev, pa.array(s.ev_time, pa.uint64()).view(_TS)),
        pa.ListArray.from_arrays(ev, pa.array(s.ev_name, pa.string())),
        *(pa.ListArray.from_arrays(ev, m) for m in s.ev_attrs),
        *(
            pa.ListArray.from_arrays(lk, pa.array(list(map(bytes.hex, ids)), pa.string()))
            for ids in (s.link_trace_id, s.link_span_id)
        ),
        pa.ListArray.from_arrays(lk, pa.array(s.link_trace_state, pa.string())),
        *(pa.ListArray.from_arrays(lk, m) for m in s.link_attrs),
    ]
    table = pa.Table.from_arrays(columns, schema=SPANS_ARROW_SCHEMA)
    if not bad:
        return DecodeResult(RowBatch("spans", table))
    rejected = set(bad)
    table = table.filter(pa.array([i not in rejected for i in range(n)]))
    return DecodeResult(RowBatch("spans", table), rejected=len(bad), error_message=_rejections(s, bad))


# ---- protobuf --------------------------------------------------------------------------------


def decode_traces_protobuf(body: bytes) -> DecodeResult:
    """Rows of the spans table from a protobuf `ExportTraceServiceRequest`."""
    try:
        return _decode_protobuf(body)
    except (message.DecodeError, UnicodeDecodeError) as err:
        hint = ""
        if body[:1] in (b"{", b"["):
            hint = "; it looks like JSON: send it as application/json"
        elif body[:2] == b"\x1f\x8b":
            hint = "; it looks gzip-compressed: set Content-Encoding: gzip"
        if isinstance(err, UnicodeDecodeError):
            what = f"a string is not valid UTF-8 ({err.reason} at {err.object[err.start : err.end]!r})"
        else:  # upb names the message type; ours is the lite copy, so keep only the reason
            what = f"malformed protobuf ({str(err).rpartition(': ')[2]})"
        raise DecodeError(f"body ({len(body)} bytes) is not a valid ExportTraceServiceRequest: {what}{hint}") from None


def _decode_protobuf(body: bytes) -> DecodeResult:
    req: Any = _LITE["Request"].FromString(body)
    s = _Spans(json=False)
    spans: list[Any] = []
    for ri, rs in enumerate(req.resource_spans):
        s.resources.append([_raw_kv(raw) for raw in rs.resource.attributes])
        for si, ss in enumerate(rs.scope_spans):
            s.scopes.append((ri, si, ss.scope.name, ss.scope.version, len(spans)))
            spans += ss.spans
    cols = [list(map(get, spans)) for get in _SPAN_FIELDS]  # column by column: no per-span tuples
    s.trace_id, s.span_id, s.parent_span_id, s.trace_state, s.name, s.kind, s.start, s.end = cols[:8]
    statuses, events, links = cols[8:]

    # Statuses repeat (mostly all empty, or all code 1): decode each distinct encoding once.
    distinct = {raw: _LITE["Status"].FromString(raw) for raw in dict.fromkeys(statuses)}
    if len(distinct) == 1:
        (st,) = distinct.values()
        s.status_code = pa.repeat(pa.scalar(st.code, pa.int64()), len(spans))
        s.status_message = pa.repeat(pa.scalar(st.message, pa.string()), len(spans))
    else:
        s.status_code = pa.array([distinct[raw].code for raw in statuses], pa.int64())
        s.status_message = pa.array([distinct[raw].message for raw in statuses], pa.string())
    s.attrs = _raw_attr_maps([sp.attributes[:] for sp in spans])

    s.ev_offsets = list(accumulate(map(len, events), initial=0))
    if s.ev_offsets[-1]:
        evs = [_LITE["Event"].FromString(raw) for raw in chain.from_iterable(events)]
        s.ev_time, s.ev_name = [e.time_unix_nano for e in evs], [e.name for e in evs]
        s.ev_attrs = _raw_attr_maps([e.attributes[:] for e in evs])
    s.link_offsets = list(accumulate(map(len, links), initial=0))
    if s.link_offsets[-1]:
        lks = [_LITE["Link"].FromString(raw) for raw in chain.from_iterable(links)]
        s.link_trace_id, s.link_span_id = [lk.trace_id for lk in lks], [lk.span_id for lk in lks]
        s.link_trace_state = [lk.trace_state for lk in lks]
        s.link_attrs = _raw_attr_maps([lk.attributes[:] for lk in lks])
    return _assemble(s)


# ---- OTLP/JSON -------------------------------------------------------------------------------


def _json_type(v: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(v), "a number")


def _obj(v: object, path: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise DecodeError(f"{path}: expected an object, got {_json_type(v)}")
    return v


def _list(d: dict[str, Any], key: str, path: str) -> list[Any]:
    v = d.get(key)
    if v is None or isinstance(v, list):
        return v or []
    raise DecodeError(f"{path}.{key}: expected an array, got {_json_type(v)}".lstrip("."))


def _str(d: dict[str, Any], key: str, path: str) -> str:
    v = d.get(key)
    if v is None or isinstance(v, str):
        return v or ""
    raise DecodeError(f"{path}.{key}: expected a string, got {_json_type(v)}")


def _int(d: dict[str, Any], key: str, path: str, lo: int = 0, hi: int = 2**64 - 1) -> int:
    """An int64/uint64 (absent: 0): a JSON number or a decimal string, as protobuf's JSON mapping allows."""
    v = d.get(key)
    if v is None:
        return 0
    if isinstance(v, int) and not isinstance(v, bool):
        i = v
    elif (isinstance(v, float) and v.is_integer()) or (isinstance(v, str) and _DECIMAL.fullmatch(v)):
        i = int(v)
    else:
        raise DecodeError(f"{path}.{key}: expected an integer (number or decimal string), got {v!r:.40}")
    if not lo <= i <= hi:
        raise DecodeError(f"{path}.{key}: {i} is out of range")
    return i


def _enum(d: dict[str, Any], key: str, names: dict[str, int], path: str) -> int:
    v = d.get(key)
    return names[v] if isinstance(v, str) and v in names else _int(d, key, path, -(2**31), 2**31 - 1)


def _hex_id(d: dict[str, Any], key: str, size: int, path: str, problems: list[str]) -> bytes:
    """A hex id; a malformed one is a problem of its span (placeholder zeros), not of the body."""
    v = d.get(key)
    if isinstance(v, str) and len(v) == 2 * size:
        try:
            raw = bytes.fromhex(v)  # length checked too: fromhex skips spaces
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
    problems.append(f"{path}.{key}: expected {2 * size} hex characters, got {v!r:.60}{hint}")
    return bytes(size)


def _json_plain(v: object, path: str) -> tuple[object, str]:
    """An OTLP/JSON AnyValue as (plain JSON-able value, OTLP type); unknown keys are ignored."""
    value = _obj(v, path)
    for key, x in value.items():
        if x is None:
            continue
        if key == "stringValue" and isinstance(x, str):
            return x, "string"
        if key == "boolValue" and isinstance(x, bool):
            return x, "bool"
        if key == "intValue":
            return _int(value, key, path, -(2**63), _I64_MAX), "int"
        p = f"{path}.{key}"
        if key == "doubleValue" and isinstance(x, int | float | str) and not isinstance(x, bool):
            try:
                return float(x), "double"  # proto3 JSON also spells doubles "NaN", "Infinity", "1.5"
            except ValueError:
                pass
        elif key == "bytesValue" and isinstance(x, str):
            try:  # standard or URL-safe alphabet, padding optional; written back standard
                raw = base64.b64decode(x.replace("-", "+").replace("_", "/") + "=" * (-len(x) % 4), validate=True)
            except ValueError:
                raise DecodeError(f"{p}: not base64: {x!r:.40}") from None
            return base64.b64encode(raw).decode(), "bytes"
        elif key == "arrayValue":
            values = _list(_obj(x, p), "values", p)
            return [_json_plain(e, f"{p}.values[{i}]")[0] for i, e in enumerate(values)], "array"
        elif key == "kvlistValue":
            return {k: plain for k, plain, _ in _json_kvs(_list(_obj(x, p), "values", p), f"{p}.values")}, "kvlist"
        if key in ("stringValue", "boolValue", "doubleValue", "bytesValue"):
            raise DecodeError(f"{p}: unexpected {_json_type(x)} {x!r:.40}")
    return None, "empty"


def _json_kvs(kvs: list[Any], path: str) -> list[tuple[str, object, str]]:
    out: list[tuple[str, object, str]] = []
    for i, kv in enumerate(kvs):
        value = kv.get("value") if type(kv) is dict else None
        if type(value) is dict and len(value) == 1 and type(s := value.get("stringValue")) is str:
            key = kv.get("key")
            if type(key) is str:  # the common case, without building the paths for errors
                out.append((key, s, "string"))
                continue
        p = f"{path}[{i}]"
        plain, typ = _json_plain(_obj(kv, p).get("value"), f"{p}.value")
        out.append((_str(kv, "key", p), plain, typ))
    return out


def _json_attrs(d: dict[str, Any], path: str) -> list[_Attr]:
    kvs = _json_kvs(_list(d, "attributes", path), f"{path}.attributes")
    return [(k, _text(plain, t), None if t == "string" else t) for k, plain, t in kvs]


def decode_traces_json(body: bytes) -> DecodeResult:
    """Rows of the spans table from an OTLP/JSON `ExportTraceServiceRequest` (hex ids, int enums)."""
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as err:
        raise DecodeError(f"body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except UnicodeDecodeError as err:
        raise DecodeError(f"body is not UTF-8 JSON: {err}") from None
    if not isinstance(doc, dict):
        raise DecodeError(f"body must be a JSON object with resourceSpans, got {_json_type(doc)}")
    s = _Spans(json=True)
    cols: list[list[Any]] = [[] for _ in range(10)]
    attrs: list[list[_Attr]] = [[], [], []]  # of spans, events, links
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
                status = _obj(sp.get("status"), f"{p}.status")
                values = (
                    _hex_id(sp, "traceId", 16, p, problems),
                    _hex_id(sp, "spanId", 8, p, problems),
                    _hex_id(sp, "parentSpanId", 8, p, problems) if sp.get("parentSpanId") else b"",
                    _str(sp, "traceState", p),
                    _str(sp, "name", p),
                    _enum(sp, "kind", _KIND_ENUM, p),
                    _int(sp, "startTimeUnixNano", p),
                    _int(sp, "endTimeUnixNano", p),
                    _enum(status, "code", _STATUS_ENUM, f"{p}.status"),
                    _str(status, "message", f"{p}.status"),
                )
                attrs[0] += _json_attrs(sp, p)
                offsets[0].append(len(attrs[0]))
                for j, ev in enumerate(_list(sp, "events", p)):
                    ep = f"{p}.events[{j}]"
                    ev = _obj(ev, ep)
                    s.ev_time.append(_int(ev, "timeUnixNano", ep))
                    s.ev_name.append(_str(ev, "name", ep))
                    attrs[1] += _json_attrs(ev, ep)
                    offsets[2].append(len(attrs[1]))
                offsets[1].append(len(s.ev_time))
                for j, lk in enumerate(_list(sp, "links", p)):
                    lp = f"{p}.links[{j}]"
                    lk = _obj(lk, lp)
                    s.link_trace_id.append(_hex_id(lk, "traceId", 16, lp, problems))
                    s.link_span_id.append(_hex_id(lk, "spanId", 8, lp, problems))
                    s.link_trace_state.append(_str(lk, "traceState", lp))
                    attrs[2] += _json_attrs(lk, lp)
                    offsets[4].append(len(attrs[2]))
                offsets[3].append(len(s.link_trace_id))
                if problems:
                    s.problems[len(cols[0])] = problems
                for col, value in zip(cols, values, strict=True):
                    col.append(value)
    s.trace_id, s.span_id, s.parent_span_id, s.trace_state, s.name, s.kind, s.start, s.end = cols[:8]
    s.status_code, s.status_message = pa.array(cols[8], pa.int64()), pa.array(cols[9], pa.string())
    s.attrs, s.ev_attrs, s.link_attrs = (_attr_maps(a, o) for a, o in zip(attrs, offsets[::2], strict=True))
    s.ev_offsets, s.link_offsets = offsets[1], offsets[3]
    return _assemble(s)
