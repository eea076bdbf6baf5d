"""What the OTLP signal decoders share: lite descriptors, attribute decoding, ids, errors, OTLP/JSON.

Attributes (why the protobuf path looks unusual): through the generated classes every attribute
costs a KeyValue wrapper, an AnyValue wrapper and a `WhichOneof`. So each signal builds, with
`lite_classes`, a *wire-compatible* "lite" copy of its messages in which `repeated KeyValue` fields
(and other rare or repetitive parts) are declared `bytes`. A message and a bytes field share one wire
type, so upb parses the same body but hands back each attribute as its raw KeyValue encoding. Raw
encodings repeat a lot, so `raw_attr_maps` has Arrow dictionary-encode them, decodes each distinct one
once (the common layouts by hand, bools/ints/doubles in one parse of their concatenation, the rest
through the real `AnyValue`) and spreads the results back with `take`. Map columns are built from
flat keys, values and offsets.

Values become column text by one rule set (`text`), for attributes and log bodies alike: strings as
is, ints in decimal, doubles as Python repr, bools true/false, bytes base64, arrays and kvlists as
compact JSON, an unset value as "". The type sidecar names the OTLP type of non-string values.
"""

from __future__ import annotations

import base64
import json
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from vigil.errors import DecodeError

TS = pa.timestamp("ns", tz="UTC")
I64_MAX = 2**63 - 1
ZERO = pa.scalar(0, pa.int32())
NO_STR = pa.array([], pa.string())
NO_MAPS = (pa.array([], pa.map_(pa.string(), pa.string())),) * 2
Attr = tuple[str, str, str | None]  # key, value as text, OTLP type (None for a string)
ScopeRow = tuple[int, int, str, str, int]  # resource index, index in the resource, name, version, first item

_SCALAR_TAGS = {0x10: "bool", 0x18: "int", 0x21: "double"}  # AnyValue fields 2, 3, 4 with their wire types
_DECIMAL = re.compile(r"-?[0-9]{1,20}")
_RAW_LISTS = pa.list_(pa.dictionary(pa.int32(), pa.binary()))
# Lite messages every signal needs: KeyValue with its value left raw, and AnyValue's scalar fields
# made repeated, so that many such AnyValues, concatenated, parse in one call.
_COMMON_LAYOUT = {
    "KeyValue": "key=1:string value=2:bytes",
    "AnyValues": "*bool_value=2:bool *int_value=3:int64 *double_value=4:double",
}


# ---- lite descriptors ------------------------------------------------------------------------


def lite_classes(name: str, layout: dict[str, str]) -> dict[str, Any]:
    """Message classes from `layout`, as "field=number:type" with * for repeated and a message name
    or a scalar type name, and "|group" after the type for a member of oneof `group` (which gives a
    scalar presence: `HasField`, `WhichOneof`); in a private pool, so the real OTLP names stay untouched."""
    fdp = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(name=f"vigil/lite_{name}.proto", package=f"vigil.lite.{name}")
    fd.syntax = "proto3"
    for msg_name, fields in layout.items():
        msg = fd.message_type.add(name=msg_name)
        oneofs: dict[str, int] = {}
        for spec in fields.split():
            fname, number, typ = re.split("[=:]", spec.lstrip("*"))
            typ, _, group = typ.partition("|")
            f = msg.field.add(
                name=fname, number=int(number), label=fdp.LABEL_REPEATED if spec[0] == "*" else fdp.LABEL_OPTIONAL
            )
            if group:
                if group not in oneofs:
                    oneofs[group] = len(msg.oneof_decl)
                    msg.oneof_decl.add(name=group)
                f.oneof_index = oneofs[group]
            if typ in layout:
                f.type, f.type_name = fdp.TYPE_MESSAGE, f".{fd.package}.{typ}"
            else:
                f.type = getattr(fdp, f"TYPE_{typ.upper()}")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{fd.package}.{n}")) for n in layout}


_LITE = lite_classes("common", _COMMON_LAYOUT)


def protobuf_error(body: bytes, message_name: str, err: Exception) -> DecodeError:
    """The DecodeError for a body upb (or UTF-8 decoding) refused, with a hint for common mix-ups."""
    hint = ""
    if body[:1] in (b"{", b"["):
        hint = "; it looks like JSON: send it as application/json"
    elif body[:2] == b"\x1f\x8b":
        hint = "; it looks gzip-compressed: set Content-Encoding: gzip"
    if isinstance(err, UnicodeDecodeError):
        what = f"a string is not valid UTF-8 ({err.reason} at {err.object[err.start : err.end]!r})"
    else:  # upb names the message type; ours is the lite copy, so keep only the reason
        what = f"malformed protobuf ({str(err).rpartition(': ')[2]})"
    return DecodeError(f"body ({len(body)} bytes) is not a valid {message_name}: {what}{hint}")


PROTOBUF_ERRORS = (message.DecodeError, UnicodeDecodeError)


# ---- values ----------------------------------------------------------------------------------


def text(plain: object, typ: str) -> str:
    """The column text of a top-level value given as (plain JSON-able value, OTLP type)."""
    if typ in ("string", "bytes"):
        return str(plain)
    if typ in ("int", "double"):
        return repr(plain)
    if typ == "bool":
        return "true" if plain else "false"
    return "" if typ == "empty" else json.dumps(plain, separators=(",", ":"), ensure_ascii=False)


def pb_plain(v: AnyValue) -> tuple[object, str]:
    """A real AnyValue as (plain JSON-able value, OTLP type); bytes become base64 text."""
    which = v.WhichOneof("value")
    if which is None:
        return None, "empty"
    if which == "array_value":
        return [pb_plain(x)[0] for x in v.array_value.values], "array"
    if which == "kvlist_value":
        return {kv.key: pb_plain(kv.value)[0] for kv in v.kvlist_value.values}, "kvlist"
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode(), "bytes"
    return getattr(v, which), which.removesuffix("_value")


def raw_value(raw: bytes) -> tuple[str, str | None]:
    """Text and type (None for a string) of one AnyValue encoding, through the real class."""
    plain, typ = pb_plain(AnyValue.FromString(raw))
    return text(plain, typ), None if typ == "string" else typ


def raw_kv(raw: bytes) -> Attr:
    """Key, text and type of one KeyValue encoding (the general, slow path)."""
    kv = _LITE["KeyValue"].FromString(raw)
    return (kv.key, *raw_value(kv.value))


def _doubles_text(floats: list[float]) -> list[str]:
    """repr() of many floats. Arrow's float-to-string gives the same shortest round-trip digits as
    repr, and the same layout for 0 and 1e-4 <= |x| < 1e10 but for repr's ".0" on integers
    (property-tested); repr does the rest. Cheaper than repr on each."""
    out: list[str] = pa.array(floats, pa.float64()).cast(pa.string()).to_pylist()
    for i, txt in enumerate(out):
        if "e" in txt or "n" in txt or txt.startswith(("0.0000", "-0.0000")):  # exponent, inf, nan, tiny
            out[i] = repr(floats[i])
        elif "." not in txt:
            out[i] = txt + ".0"
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
        for i, txt in zip(positions, values[t], strict=True):
            texts[i] = txt


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
        key, txt, typ = raw_kv(raw)
        keys.append(key)
        texts.append(txt)
        types.append(typ)
    if scalars:
        _scalar_texts(scalars, at, texts)
    return keys, texts, types


# ---- attribute and id columns ----------------------------------------------------------------


def _maps(keys: Any, values: Any, types: Any, offsets: Any) -> tuple[Any, Any]:
    """The attribute Map column and its type Map column (non-string keys only) from flat arrays."""
    attrs = pa.MapArray.from_arrays(offsets, keys, values)
    if types.null_count == len(types):
        return attrs, pa.MapArray.from_arrays(pa.repeat(ZERO, len(offsets)), NO_STR, NO_STR)
    typed = pc.is_valid(types)
    ends = pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum(typed.cast(pa.int64()))])
    return attrs, pa.MapArray.from_arrays(ends.take(offsets).cast(pa.int32()), keys.filter(typed), types.filter(typed))


def attr_maps(attrs: Sequence[Attr], offsets: Sequence[int]) -> tuple[Any, Any]:
    """Map columns from decoded attributes, `offsets` delimiting each row's."""
    keys, values, types = (pa.array(c, pa.string()) for c in (zip(*attrs, strict=True) if attrs else ((), (), ())))
    return _maps(keys, values, types, pa.array(offsets, pa.int32()))


def raw_attr_maps(per_row: Sequence[Sequence[bytes]]) -> tuple[Any, Any]:
    """Map columns from raw KeyValue encodings, one list per row; decodes each distinct one once."""
    lists = pa.array(per_row, _RAW_LISTS)  # dictionary-encoded while converting
    encoded = lists.values
    keys, values, types = (
        pa.array(c, pa.string()).take(encoded.indices) for c in _decode_kvs(encoded.dictionary.to_pylist())
    )
    return _maps(keys, values, types, lists.offsets)


def hex_ids(ids: Sequence[bytes], size: int, all_valid: bool) -> Any:
    """Lowercase hex of each id ("" for an empty one)."""
    joined = b"".join(ids)
    if not all_valid or len(joined) != size * len(ids):
        return pa.array(list(map(bytes.hex, ids)), pa.string())
    hexed = pa.py_buffer(joined.hex().encode())  # every id has `size` bytes: one hex() for all
    return pa.Array.from_buffers(pa.binary(2 * size), len(ids), [None, hexed]).cast(pa.string())


def id_problem(label: str, v: bytes, size: int) -> str:
    hint = {2 * size: " (hex text? send the raw bytes)", (size + 2) // 3 * 4: " (base64 text? send the raw bytes)"}
    return f"{label} must be {size} bytes, got {len(v)}{hint.get(len(v), '')}"


def resource_scope_columns(resources: Sequence[Sequence[Attr]], scopes: Sequence[ScopeRow], n: int) -> list[Any]:
    """ServiceName, ServiceVersion, resource attribute and type maps, ScopeName and ScopeVersion for
    `n` items: one value per resource or scope, spread out to their items with take."""
    firsts = pa.array([sc[4] for sc in scopes] + [n], pa.int32())
    scope_idx = pc.list_parent_indices(pa.ListArray.from_arrays(firsts, pa.nulls(n)))
    res_idx = pa.array([sc[0] for sc in scopes], pa.int32()).take(scope_idx)
    services, versions = [], []
    for attrs in resources:
        found = {k: v for k, v, _ in reversed(attrs)}  # reversed: the first of duplicate keys wins
        services.append(found.get("service.name", "unknown_service"))
        versions.append(found.get("service.version", ""))
    offsets = [0]
    for attrs in resources:
        offsets.append(offsets[-1] + len(attrs))
    res_maps = attr_maps([a for attrs in resources for a in attrs], offsets)
    return [
        pa.array(services, pa.string()).take(res_idx),
        pa.array(versions, pa.string()).take(res_idx),
        *(m.take(res_idx) for m in res_maps),
        *(pa.array([sc[k] for sc in scopes], pa.string()).take(scope_idx) for k in (2, 3)),
    ]


class Items(NamedTuple):
    """How rejection messages name a signal's items: in protobuf terms and as OTLP/JSON paths."""

    singular: str  # "span"
    plural: str  # "spans"
    json_path: tuple[str, str, str]  # ("resourceSpans", "scopeSpans", "spans")


def rejections(
    items: Items,
    json: bool,
    total: int,
    bad: Sequence[int],
    scopes: Sequence[ScopeRow],
    found: dict[int, list[str]],
    problems_of: Callable[[int], list[str]],
) -> str:
    """The partial-success message: the first few problems of the `bad` items, each with where it is.
    `found` holds problems already located while reading (OTLP/JSON); `problems_of` gives the rest."""
    firsts = [sc[4] for sc in scopes]
    problems: list[str] = []
    for i in bad:
        ri, si, _, _, first = scopes[bisect_right(firsts, i) - 1]
        if json:
            r, s, k = items.json_path
            where = f"{r}[{ri}].{s}[{si}].{k}[{i - first}]."
        else:
            where = f"{items.singular} {i - first} (resource {ri}, scope {si}): "
        problems += found.get(i) or [where + p for p in problems_of(i)]
        if len(problems) > 5:
            break
    more = "; and more" if len(problems) > 5 else ""
    return f"rejected {len(bad)} of {total} {items.plural}: " + "; ".join(problems[:5]) + more


# ---- OTLP/JSON -------------------------------------------------------------------------------


def json_type(v: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(v), "a number")


def load_json(body: bytes, root: str) -> dict[str, Any]:
    """The request object of an OTLP/JSON body whose top-level array is `root`."""
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as err:
        raise DecodeError(f"body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except UnicodeDecodeError as err:
        raise DecodeError(f"body is not UTF-8 JSON: {err}") from None
    if not isinstance(doc, dict):
        raise DecodeError(f"body must be a JSON object with {root}, got {json_type(doc)}")
    return doc


def obj(v: object, path: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise DecodeError(f"{path}: expected an object, got {json_type(v)}")
    return v


def array(d: dict[str, Any], key: str, path: str) -> list[Any]:
    v = d.get(key)
    if v is None or isinstance(v, list):
        return v or []
    raise DecodeError(f"{path}.{key}: expected an array, got {json_type(v)}".lstrip("."))


def string(d: dict[str, Any], key: str, path: str) -> str:
    v = d.get(key)
    if v is None or isinstance(v, str):
        return v or ""
    raise DecodeError(f"{path}.{key}: expected a string, got {json_type(v)}")


def integer(d: dict[str, Any], key: str, path: str, lo: int = 0, hi: int = 2**64 - 1) -> int:
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


def enum(d: dict[str, Any], key: str, names: dict[str, int], path: str) -> int:
    v = d.get(key)
    return names[v] if isinstance(v, str) and v in names else integer(d, key, path, -(2**31), 2**31 - 1)


def hex_id(d: dict[str, Any], key: str, size: int, path: str, problems: list[str]) -> bytes:
    """A hex id; a malformed one is a problem of its item (placeholder zeros), not of the body."""
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


def json_plain(v: object, path: str) -> tuple[object, str]:
    """An OTLP/JSON AnyValue as (plain JSON-able value, OTLP type); unknown keys are ignored."""
    value = obj(v, path)
    for key, x in value.items():
        if x is None:
            continue
        if key == "stringValue" and isinstance(x, str):
            return x, "string"
        if key == "boolValue" and isinstance(x, bool):
            return x, "bool"
        if key == "intValue":
            return integer(value, key, path, -(2**63), I64_MAX), "int"
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
            values = array(obj(x, p), "values", p)
            return [json_plain(e, f"{p}.values[{i}]")[0] for i, e in enumerate(values)], "array"
        elif key == "kvlistValue":
            return {k: plain for k, plain, _ in _json_kvs(array(obj(x, p), "values", p), f"{p}.values")}, "kvlist"
        if key in ("stringValue", "boolValue", "doubleValue", "bytesValue"):
            raise DecodeError(f"{p}: unexpected {json_type(x)} {x!r:.40}")
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
        plain, typ = json_plain(obj(kv, p).get("value"), f"{p}.value")
        out.append((string(kv, "key", p), plain, typ))
    return out


def json_attrs(d: dict[str, Any], path: str, key: str = "attributes") -> list[Attr]:
    """The decoded `attributes` (or another KeyValue array, `key`) of an OTLP/JSON object."""
    kvs = _json_kvs(array(d, key, path), f"{path}.{key}")
    return [(k, text(plain, t), None if t == "string" else t) for k, plain, t in kvs]
