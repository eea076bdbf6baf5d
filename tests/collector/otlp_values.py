"""Building blocks shared by the OTLP decoder tests: ids, AnyValues and timestamps."""

from __future__ import annotations

import pyarrow as pa
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


def ts(ns: int) -> object:
    """A timestamp as to_pylist gives it back."""
    return pa.scalar(ns, pa.timestamp("ns", tz="UTC")).as_py()
