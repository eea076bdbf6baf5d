"""Decode OTLP trace export requests (protobuf and JSON) into rows of the spans table.

Both decoders are pure: bytes in, a `DecodeResult` whose rows have exactly `SPANS_ARROW_SCHEMA`.
Invalid spans are dropped and counted (OTLP partial success); an unreadable body raises `DecodeError`.

Why the protobuf path looks unusual: through the generated classes every attribute costs a
KeyValue wrapper, an AnyValue wrapper and a `WhichOneof`, which caps decoding near 70k spans/s.
So at import we build a *wire-compatible* "lite" copy of the trace messages in which
`repeated KeyValue` fields, `Span.events`, `Span.links` and `Span.status` are declared `bytes`:
upb parses the same body but hands back raw encodings, no per-attribute objects. Attributes are
then dictionary-deduplicated and each distinct one decoded once (the machinery, shared with the
logs decoder, is in `_otlp_common`); span fields come out column by column with
`map(attrgetter(...))`. Only rare parts (events, links, resources) are parsed item by item.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain, count
from operator import attrgetter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from vigil.collector.decode._otlp_common import (
    I64_MAX,
    NO_MAPS,
    PROTOBUF_ERRORS,
    TS,
    ZERO,
    Attr,
    Items,
    ScopeRow,
    array,
    attr_maps,
    enum,
    hex_id,
    hex_ids,
    id_problem,
    integer,
    json_attrs,
    lite_classes,
    load_json,
    obj,
    protobuf_error,
    raw_attr_maps,
    raw_kv,
    rejections,
    resource_scope_columns,
    string,
)
from vigil.store.schema import SPANS_ARROW_SCHEMA
from vigil.types import DecodeResult, RowBatch

__all__ = ["decode_traces_json", "decode_traces_protobuf"]

_KINDS = pa.array(["Unspecified", "Internal", "Server", "Client", "Producer", "Consumer"])
_STATUSES = pa.array(["Unset", "Ok", "Error"])
_KIND_ENUM = {f"SPAN_KIND_{name.upper()}": i for i, name in enumerate(_KINDS.to_pylist())}  # enum names, as JSON may
_STATUS_ENUM = {f"STATUS_CODE_{name.upper()}": i for i, name in enumerate(_STATUSES.to_pylist())}
_PB_LABELS = ("trace_id", "span_id", "parent_span_id", "start_time_unix_nano", "end_time_unix_nano")
_JSON_LABELS = ("traceId", "spanId", "parentSpanId", "startTimeUnixNano", "endTimeUnixNano")
_ITEMS = Items("span", "spans", ("resourceSpans", "scopeSpans", "spans"))

# The lite messages (see the module docstring): numbers as in trace.proto, enums int32 on the wire.
_LITE = lite_classes(
    "trace",
    {
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
        "Status": "message=2:string code=3:int32",
    },
)
_SPAN_FIELDS = [
    attrgetter(name)
    for name in (
        *("trace_id", "span_id", "parent_span_id", "trace_state", "name", "kind", "start_time_unix_nano"),
        *("end_time_unix_nano", "status", "events", "links"),
    )
]


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
    attrs: tuple[Any, Any] = NO_MAPS
    resources: list[list[Attr]] = field(default_factory=list)  # per resource
    # per scope: resource index, index in the resource, name, version, first span
    scopes: list[ScopeRow] = field(default_factory=list)
    ev_offsets: Sequence[int] = (0,)  # per span, into the per-event lists
    ev_time: list[int] = field(default_factory=list)
    ev_name: list[str] = field(default_factory=list)
    ev_attrs: tuple[Any, Any] = NO_MAPS
    link_offsets: Sequence[int] = (0,)
    link_trace_id: list[bytes] = field(default_factory=list)
    link_span_id: list[bytes] = field(default_factory=list)
    link_trace_state: list[str] = field(default_factory=list)
    link_attrs: tuple[Any, Any] = NO_MAPS
    problems: dict[int, list[str]] = field(default_factory=dict)  # found while reading, by span


def _names(codes: Any, names: Any) -> Any:
    """Enum names for integer codes; codes outside the table read as the first (unspecified) name."""
    try:
        return names.take(codes)
    except IndexError:
        return names.take(pc.if_else(pc.and_(pc.greater_equal(codes, 0), pc.less(codes, len(names))), codes, 0))


def _span_problems(s: _Spans, i: int) -> list[str]:
    """Why span `i` is invalid, one phrase per problem (the rules of `_assemble`'s check)."""
    labels = _JSON_LABELS if s.json else _PB_LABELS
    out: list[str] = []
    for label, v, size in zip(labels, (s.trace_id[i], s.span_id[i], s.parent_span_id[i]), (16, 8, 8), strict=False):
        if len(v) != size and (v or label != labels[2]):
            out.append(id_problem(label, v, size))
        elif v == bytes(size) and label != labels[2]:
            out.append(f"{label} is all zeros, which is not a valid id")
    start, end = s.start[i], s.end[i]
    if start == 0:
        out.append(f"{labels[3]} is 0 (it must be the span's start, in nanoseconds since the Unix epoch)")
    for label, t in ((labels[3], start), (labels[4], end)):
        if t > I64_MAX:
            out.append(f"{label} {t} is after the year 2262 (nanoseconds since the Unix epoch expected)")
    if end < start:
        out.append(f"{labels[4]} {end} is before {labels[3]} {start}")
    first = s.link_offsets[i]
    for j in range(first, s.link_offsets[i + 1]):
        for label, v, size in (("trace_id", s.link_trace_id[j], 16), ("span_id", s.link_span_id[j], 8)):
            if len(v) != size:
                out.append(id_problem(f"links[{j - first}].{label}", v, size))
    return out


def _rejections(s: _Spans, bad: list[int]) -> str:
    return rejections(_ITEMS, s.json, len(s.trace_id), bad, s.scopes, s.problems, lambda i: _span_problems(s, i))


def _assemble(s: _Spans) -> DecodeResult:
    n = len(s.trace_id)
    z16, z8 = bytes(16), bytes(8)
    bad = [
        i
        for i, t, sp, p, a, b in zip(count(), s.trace_id, s.span_id, s.parent_span_id, s.start, s.end)
        if len(t) != 16 or t == z16 or len(sp) != 8 or sp == z8 or (p and len(p) != 8) or not 0 < a <= b <= I64_MAX
    ]
    bad_links = [
        bisect_right(s.link_offsets, j) - 1
        for j, (t, sp) in enumerate(zip(s.link_trace_id, s.link_span_id, strict=True))
        if len(t) != 16 or len(sp) != 8
    ]
    if s.problems or bad_links:
        bad = sorted({*bad, *bad_links, *s.problems})

    start, end = pa.array(s.start, pa.uint64()), pa.array(s.end, pa.uint64())
    ev, lk = (pa.array(o, pa.int32()) if o[-1] else pa.repeat(ZERO, n + 1) for o in (s.ev_offsets, s.link_offsets))
    columns = [
        start.view(TS),  # invalid spans may wrap here and in Duration; they are filtered out below
        hex_ids(s.trace_id, 16, not bad),
        hex_ids(s.span_id, 8, not bad),
        hex_ids(s.parent_span_id, 8, not bad),
        pa.array(s.trace_state, pa.string()),
        pa.array(s.name, pa.string()),
        _names(pa.array(s.kind, pa.int64()), _KINDS),
        *resource_scope_columns(s.resources, s.scopes, n),
        *s.attrs,
        pc.subtract(end, start),
        _names(s.status_code, _STATUSES),
        s.status_message,
        pa.ListArray.from_arrays(ev, pa.array(s.ev_time, pa.uint64()).view(TS)),
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
        return DecodeResult((RowBatch("spans", table),))
    rejected = set(bad)
    table = table.filter(pa.array([i not in rejected for i in range(n)]))
    return DecodeResult((RowBatch("spans", table),), rejected=len(bad), error_message=_rejections(s, bad))


# ---- protobuf --------------------------------------------------------------------------------


def decode_traces_protobuf(body: bytes) -> DecodeResult:
    """Rows of the spans table from a protobuf `ExportTraceServiceRequest`."""
    try:
        return _decode_protobuf(body)
    except PROTOBUF_ERRORS as err:
        raise protobuf_error(body, "ExportTraceServiceRequest", err) from None


def _decode_protobuf(body: bytes) -> DecodeResult:
    req: Any = _LITE["Request"].FromString(body)
    s = _Spans(json=False)
    spans: list[Any] = []
    for ri, rs in enumerate(req.resource_spans):
        s.resources.append([raw_kv(raw) for raw in rs.resource.attributes])
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
    s.attrs = raw_attr_maps([sp.attributes[:] for sp in spans])

    s.ev_offsets = list(accumulate(map(len, events), initial=0))
    if s.ev_offsets[-1]:
        evs = [_LITE["Event"].FromString(raw) for raw in chain.from_iterable(events)]
        s.ev_time, s.ev_name = [e.time_unix_nano for e in evs], [e.name for e in evs]
        s.ev_attrs = raw_attr_maps([e.attributes[:] for e in evs])
    s.link_offsets = list(accumulate(map(len, links), initial=0))
    if s.link_offsets[-1]:
        lks = [_LITE["Link"].FromString(raw) for raw in chain.from_iterable(links)]
        s.link_trace_id, s.link_span_id = [lk.trace_id for lk in lks], [lk.span_id for lk in lks]
        s.link_trace_state = [lk.trace_state for lk in lks]
        s.link_attrs = raw_attr_maps([lk.attributes[:] for lk in lks])
    return _assemble(s)


# ---- OTLP/JSON -------------------------------------------------------------------------------


def decode_traces_json(body: bytes) -> DecodeResult:
    """Rows of the spans table from an OTLP/JSON `ExportTraceServiceRequest` (hex ids, int enums)."""
    doc = load_json(body, "resourceSpans")
    s = _Spans(json=True)
    cols: list[list[Any]] = [[] for _ in range(10)]
    attrs: list[list[Attr]] = [[], [], []]  # of spans, events, links
    offsets: list[list[int]] = [[0], [0], [0], [0], [0]]  # span attrs, events, event attrs, links, link attrs
    for ri, rs in enumerate(array(doc, "resourceSpans", "")):
        rp = f"resourceSpans[{ri}]"
        rs = obj(rs, rp)
        s.resources.append(json_attrs(obj(rs.get("resource"), f"{rp}.resource"), f"{rp}.resource"))
        for si, ss in enumerate(array(rs, "scopeSpans", rp)):
            sp_path = f"{rp}.scopeSpans[{si}]"
            ss = obj(ss, sp_path)
            scope = obj(ss.get("scope"), f"{sp_path}.scope")
            s.scopes.append((ri, si, string(scope, "name", sp_path), string(scope, "version", sp_path), len(cols[0])))
            for k, sp in enumerate(array(ss, "spans", sp_path)):
                p = f"{sp_path}.spans[{k}]"
                sp = obj(sp, p)
                problems: list[str] = []
                status = obj(sp.get("status"), f"{p}.status")
                values = (
                    hex_id(sp, "traceId", 16, p, problems),
                    hex_id(sp, "spanId", 8, p, problems),
                    hex_id(sp, "parentSpanId", 8, p, problems) if sp.get("parentSpanId") else b"",
                    string(sp, "traceState", p),
                    string(sp, "name", p),
                    enum(sp, "kind", _KIND_ENUM, p),
                    integer(sp, "startTimeUnixNano", p),
                    integer(sp, "endTimeUnixNano", p),
                    enum(status, "code", _STATUS_ENUM, f"{p}.status"),
                    string(status, "message", f"{p}.status"),
                )
                attrs[0] += json_attrs(sp, p)
                offsets[0].append(len(attrs[0]))
                for j, ev in enumerate(array(sp, "events", p)):
                    ep = f"{p}.events[{j}]"
                    ev = obj(ev, ep)
                    s.ev_time.append(integer(ev, "timeUnixNano", ep))
                    s.ev_name.append(string(ev, "name", ep))
                    attrs[1] += json_attrs(ev, ep)
                    offsets[2].append(len(attrs[1]))
                offsets[1].append(len(s.ev_time))
                for j, lk in enumerate(array(sp, "links", p)):
                    lp = f"{p}.links[{j}]"
                    lk = obj(lk, lp)
                    s.link_trace_id.append(hex_id(lk, "traceId", 16, lp, problems))
                    s.link_span_id.append(hex_id(lk, "spanId", 8, lp, problems))
                    s.link_trace_state.append(string(lk, "traceState", lp))
                    attrs[2] += json_attrs(lk, lp)
                    offsets[4].append(len(attrs[2]))
                offsets[3].append(len(s.link_trace_id))
                if problems:
                    s.problems[len(cols[0])] = problems
                for col, value in zip(cols, values, strict=True):
                    col.append(value)
    s.trace_id, s.span_id, s.parent_span_id, s.trace_state, s.name, s.kind, s.start, s.end = cols[:8]
    s.status_code, s.status_message = pa.array(cols[8], pa.int64()), pa.array(cols[9], pa.string())
    s.attrs, s.ev_attrs, s.link_attrs = (attr_maps(a, o) for a, o in zip(attrs, offsets[::2], strict=True))
    s.ev_offsets, s.link_offsets = offsets[1], offsets[3]
    return _assemble(s)
