"""Decode OTLP log export requests (protobuf and JSON) into rows of the logs table.

Both decoders are pure: bytes in, a `DecodeResult` whose rows have exactly `LOGS_ARROW_SCHEMA`,
with the columns of the OpenTelemetry Collector's ClickHouse exporter (`otel_logs`). Invalid records
are dropped and counted (OTLP partial success); an unreadable body raises `DecodeError`.

The protobuf path parses a wire-compatible "lite" copy of the log messages (see `_otlp_common`) in
which attributes and the body stay raw bytes: attributes are dictionary-deduplicated and decoded once
per distinct encoding, string bodies (nearly all of them) are cut by hand, and record fields come out
column by column with `map(attrgetter(...))`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count
from operator import attrgetter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from vigil.collector.decode._otlp_common import (
    I64_MAX,
    NO_MAPS,
    PROTOBUF_ERRORS,
    TS,
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
    json_plain,
    lite_classes,
    load_json,
    obj,
    protobuf_error,
    raw_attr_maps,
    raw_kv,
    raw_value,
    rejections,
    resource_scope_columns,
    string,
    text,
)
from vigil.store.schema import LOGS_ARROW_SCHEMA
from vigil.types import DecodeResult, RowBatch

__all__ = ["decode_logs_json", "decode_logs_protobuf"]

_SEVERITIES = ["UNSPECIFIED"] + [f"{level}{n or ''}" for level in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
                                 for n in (0, 2, 3, 4)]  # fmt: skip
_SEVERITY_ENUM = {f"SEVERITY_NUMBER_{name}": i for i, name in enumerate(_SEVERITIES)}  # enum names, as JSON may
_SEVERITY_MAX = len(_SEVERITIES) - 1
_PB_LABELS = ("trace_id", "span_id", "time_unix_nano", "observed_time_unix_nano", "severity_number")
_JSON_LABELS = ("traceId", "spanId", "timeUnixNano", "observedTimeUnixNano", "severityNumber")
_ITEMS = Items("record", "log records", ("resourceLogs", "scopeLogs", "logRecords"))
_Z16, _Z8 = bytes(16), bytes(8)

# The lite messages: numbers as in logs.proto (event_name is field 12), enums int32 on the wire.
_LITE = lite_classes(
    "logs",
    {
        "Request": "*resource_logs=1:ResourceLogs",
        "ResourceLogs": "resource=1:Resource *scope_logs=2:ScopeLogs",
        "Resource": "*attributes=1:bytes",
        "ScopeLogs": "scope=1:Scope *log_records=2:LogRecord",
        "Scope": "name=1:string version=2:string",
        "LogRecord": "time_unix_nano=1:fixed64 severity_number=2:int32 severity_text=3:string body=5:bytes"
        " *attributes=6:bytes flags=8:fixed32 trace_id=9:bytes span_id=10:bytes"
        " observed_time_unix_nano=11:fixed64 event_name=12:string",
    },
)
_RECORD_FIELDS = [
    attrgetter(name)
    for name in (
        *("time_unix_nano", "observed_time_unix_nano", "trace_id", "span_id", "flags", "severity_text"),
        *("severity_number", "event_name", "body"),
    )
]


@dataclass(slots=True)
class _Logs:
    """What a decoder read, record-aligned unless noted; `_assemble` turns it into the table."""

    json: bool
    time: Sequence[int] = ()
    observed: Sequence[int] = ()
    trace_id: Sequence[bytes] = ()
    span_id: Sequence[bytes] = ()
    flags: Sequence[int] = ()
    severity_text: Sequence[str] = ()
    severity_number: Sequence[int] = ()
    event_name: Sequence[str] = ()
    body: Sequence[str] = ()
    body_type: Sequence[str] = ()
    attrs: tuple[Any, Any] = NO_MAPS
    resources: list[list[Attr]] = field(default_factory=list)  # per resource
    scopes: list[ScopeRow] = field(default_factory=list)
    problems: dict[int, list[str]] = field(default_factory=dict)  # found while reading, by record


def _record_problems(s: _Logs, i: int) -> list[str]:
    """Why record `i` is invalid, one phrase per problem (the rules of `_assemble`'s check)."""
    trace, span, time, observed, severity = _JSON_LABELS if s.json else _PB_LABELS
    out: list[str] = []
    for label, v, size in ((trace, s.trace_id[i], 16), (span, s.span_id[i], 8)):
        if v and len(v) != size:
            out.append(id_problem(label, v, size))
    if s.time[i] == s.observed[i] == 0:
        out.append(f"{time} and {observed} are both 0")
    for label, t in ((time, s.time[i]), (observed, s.observed[i])):
        if t > I64_MAX:
            out.append(f"{label} {t} is after the year 2262 (nanoseconds since the Unix epoch expected)")
    if not 0 <= s.severity_number[i] <= _SEVERITY_MAX:
        out.append(f"{severity} {s.severity_number[i]} is out of range (0 to {_SEVERITY_MAX})")
    return out


def _ids(ids: Sequence[bytes], size: int, all_valid: bool) -> Any:
    """Lowercase hex ids; an all-zero id reads as "" (no id), as the collector's pdata prints it."""
    zero = bytes(size)
    if zero in ids:  # rare: the SDK leaves ids out instead
        ids = [b"" if v == zero else v for v in ids]
    return hex_ids(ids, size, all_valid)


def _assemble(s: _Logs) -> DecodeResult:
    n = len(s.time)
    bad = [
        i
        for i, t, o, tid, sid, sev in zip(count(), s.time, s.observed, s.trace_id, s.span_id, s.severity_number)
        if not (t or o)
        or t > I64_MAX
        or o > I64_MAX
        or (tid and len(tid) != 16)
        or (sid and len(sid) != 8)
        or not 0 <= sev <= _SEVERITY_MAX
    ]
    if s.problems:
        bad = sorted({*bad, *s.problems})
    time, observed = pa.array(s.time, pa.uint64()), pa.array(s.observed, pa.uint64())
    zero = pa.scalar(0, pa.uint64())
    resource = resource_scope_columns(s.resources, s.scopes, n)
    columns = [
        pc.if_else(pc.equal(time, zero), observed, time).view(TS),  # the spec: no event time, use observed
        pc.if_else(pc.equal(observed, zero), time, observed).view(TS),
        _ids(s.trace_id, 16, not bad),
        _ids(s.span_id, 8, not bad),
        pa.array(s.flags, pa.uint32()).cast(pa.uint8(), safe=False),  # the low byte holds the W3C trace flags
        pa.array(s.severity_text, pa.string()),
        pa.array(s.severity_number, pa.int32()).cast(pa.uint8(), safe=False),  # out of range: rejected below
        *resource[:2],
        pa.array(s.body, pa.string()),
        pa.array(s.body_type, pa.string()),
        pa.array(s.event_name, pa.string()),
        *resource[2:],
        *s.attrs,
    ]
    table = pa.Table.from_arrays(columns, schema=LOGS_ARROW_SCHEMA)
    if not bad:
        return DecodeResult((RowBatch("logs", table),))
    rejected = set(bad)
    table = table.filter(pa.array([i not in rejected for i in range(n)]))
    message = rejections(_ITEMS, s.json, n, bad, s.scopes, s.problems, lambda i: _record_problems(s, i))
    return DecodeResult((RowBatch("logs", table),), rejected=len(bad), error_message=message)


# ---- protobuf --------------------------------------------------------------------------------


def decode_logs_protobuf(body: bytes) -> DecodeResult:
    """Rows of the logs table from a protobuf `ExportLogsServiceRequest`."""
    try:
        return _decode_protobuf(body)
    except PROTOBUF_ERRORS as err:
        raise protobuf_error(body, "ExportLogsServiceRequest", err) from None


def _bodies(raws: Sequence[bytes]) -> tuple[list[str], list[str]]:
    """Texts and types ("" for a string) of raw AnyValue bodies. A string body, ``0A len utf8`` with
    a 1- or 2-byte length and nothing after it, is cut by hand; the rest goes through `AnyValue`."""
    texts: list[str] = []
    types: list[str] = []
    for raw in raws:
        n = len(raw)
        if n > 1 and raw[0] == 0x0A:
            if raw[1] == n - 2 < 0x80:
                texts.append(raw[2:].decode())
                types.append("")
                continue
            if n > 2 and raw[1] >= 0x80 and raw[2] < 0x80 and (raw[1] & 0x7F | raw[2] << 7) == n - 3 >= 0x80:
                texts.append(raw[3:].decode())
                types.append("")
                continue
        txt, typ = raw_value(raw)
        texts.append(txt)
        types.append(typ or "")
    return texts, types


def _decode_protobuf(body: bytes) -> DecodeResult:
    req: Any = _LITE["Request"].FromString(body)
    s = _Logs(json=False)
    records: list[Any] = []
    for ri, rl in enumerate(req.resource_logs):
        s.resources.append([raw_kv(raw) for raw in rl.resource.attributes])
        for si, sl in enumerate(rl.scope_logs):
            s.scopes.append((ri, si, sl.scope.name, sl.scope.version, len(records)))
            records += sl.log_records
    cols = [list(map(get, records)) for get in _RECORD_FIELDS]  # column by column: no per-record tuples
    s.time, s.observed, s.trace_id, s.span_id, s.flags, s.severity_text, s.severity_number, s.event_name = cols[:8]
    s.body, s.body_type = _bodies(cols[8])
    s.attrs = raw_attr_maps([r.attributes[:] for r in records])
    return _assemble(s)


# ---- OTLP/JSON -------------------------------------------------------------------------------


def decode_logs_json(body: bytes) -> DecodeResult:
    """Rows of the logs table from an OTLP/JSON `ExportLogsServiceRequest` (hex ids, int enums)."""
    doc = load_json(body, "resourceLogs")
    s = _Logs(json=True)
    cols: list[list[Any]] = [[] for _ in range(10)]
    attrs: list[Attr] = []
    offsets = [0]
    for ri, rl in enumerate(array(doc, "resourceLogs", "")):
        rp = f"resourceLogs[{ri}]"
        rl = obj(rl, rp)
        s.resources.append(json_attrs(obj(rl.get("resource"), f"{rp}.resource"), f"{rp}.resource"))
        for si, sl in enumerate(array(rl, "scopeLogs", rp)):
            sp = f"{rp}.scopeLogs[{si}]"
            sl = obj(sl, sp)
            scope = obj(sl.get("scope"), f"{sp}.scope")
            s.scopes.append((ri, si, string(scope, "name", sp), string(scope, "version", sp), len(cols[0])))
            for k, rec in enumerate(array(sl, "logRecords", sp)):
                p = f"{sp}.logRecords[{k}]"
                rec = obj(rec, p)
                problems: list[str] = []
                plain, typ = json_plain(rec.get("body"), f"{p}.body")
                values = (
                    integer(rec, "timeUnixNano", p),
                    integer(rec, "observedTimeUnixNano", p),
                    hex_id(rec, "traceId", 16, p, problems) if rec.get("traceId") else b"",
                    hex_id(rec, "spanId", 8, p, problems) if rec.get("spanId") else b"",
                    integer(rec, "flags", p, 0, 2**32 - 1),
                    string(rec, "severityText", p),
                    enum(rec, "severityNumber", _SEVERITY_ENUM, p),
                    string(rec, "eventName", p),
                    text(plain, typ),
                    "" if typ == "string" else typ,
                )
                attrs += json_attrs(rec, p)
                offsets.append(len(attrs))
                if problems:
                    s.problems[len(cols[0])] = problems
                for col, value in zip(cols, values, strict=True):
                    col.append(value)
    s.time, s.observed, s.trace_id, s.span_id, s.flags, s.severity_text, s.severity_number, s.event_name = cols[:8]
    s.body, s.body_type = cols[8], cols[9]
    s.attrs = attr_maps(attrs, offsets)
    return _assemble(s)
