"""Building blocks shared by the OTLP decoder tests: ids, AnyValues and timestamps."""

from __future__ import annotations

import base64
import json

import pyarrow as pa
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")


def val(v: object) -> AnyValue:
    """An AnyValue from a plain Python value; None is an AnyValue with nothing set."""
    if v is None:
        return AnyValue()
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    if isinstance(v, list):
        return AnyValue(array_value=ArrayValue(values=[val(x) for x in v]))
    if isinstance(v, dict):
        return AnyValue(kvlist_value=KeyValueList(values=kvs(v)))
    assert isinstance(v, str)
    return AnyValue(string_value=v)


def kvs(attrs: dict[str, object] | list[tuple[str, object]]) -> list[KeyValue]:
    items = attrs.items() if isinstance(attrs, dict) else attrs
    return [KeyValue(key=k, value=val(v)) for k, v in items]


_ID_KEYS = {"traceId", "spanId", "parentSpanId"}
# 64-bit integer fields of the trace, log and metric messages (strings in proto3 JSON).
_INT64_KEYS = {
    *("timeUnixNano", "observedTimeUnixNano", "startTimeUnixNano", "endTimeUnixNano", "intValue"),
    *("asInt", "count", "zeroCount", "bucketCounts"),
}


def otlp_json(req: Message, *, numbers: bool = False, upper: bool = False, enum_names: bool = False) -> bytes:
    """OTLP/JSON for `req` as peers send it: hex ids (or `upper`-case hex), integer enums (or their
    names), 64-bit integers as strings (or, `numbers`, as JSON numbers)."""

    def fix(node: object) -> object:
        if isinstance(node, list):
            return [fix(x) for x in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for k, v in node.items():
            if k in _ID_KEYS:
                v = base64.b64decode(v).hex()
                v = v.upper() if upper else v
            elif k in _INT64_KEYS and numbers:
                v = [int(x) for x in v] if isinstance(v, list) else int(v)
            out[k] = fix(v)
        return out

    return json.dumps(fix(json_format.MessageToDict(req, use_integers_for_enums=not enum_names))).encode()


def ts(ns: int) -> object:
    """A timestamp as to_pylist gives it back."""
    return pa.scalar(ns, pa.timestamp("ns", tz="UTC")).as_py()
