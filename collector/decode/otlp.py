"""OTLP request bodies: media type, content encoding and size limit, then the signal's decoder.

Pure: bytes and headers in, rows out. It runs in decode worker processes, so everything it
raises is a picklable `VigilError`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Literal

from vigil.collector.decode.otlp_logs import decode_logs_json, decode_logs_protobuf
from vigil.collector.decode.otlp_metrics import decode_metrics_json, decode_metrics_protobuf
from vigil.collector.decode.otlp_traces import decode_traces_json, decode_traces_protobuf
from vigil.errors import DecodeError, PayloadTooLarge, UnsupportedMediaType
from vigil.types import DecodeResult

__all__ = ["JSON", "PROTOBUF", "Signal", "decode_otlp_request", "decompress", "media_type"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
Signal = Literal["traces", "logs", "metrics"]

_DECODERS: dict[tuple[str, str], Callable[[bytes], DecodeResult]] = {
    ("traces", PROTOBUF): decode_traces_protobuf,
    ("traces", JSON): decode_traces_json,
    ("logs", PROTOBUF): decode_logs_protobuf,
    ("logs", JSON): decode_logs_json,
    ("metrics", PROTOBUF): decode_metrics_protobuf,
    ("metrics", JSON): decode_metrics_json,
}


def media_type(content_type: str | None) -> str:
    """The OTLP media type of a Content-Type header, or `UnsupportedMediaType`.

    >>> media_type("application/json; charset=utf-8")
    'application/json'
    """
    value = (content_type or "").split(";", 1)[0].strip().lower()
    if value in (PROTOBUF, JSON):
        return value
    raise UnsupportedMediaType(
        f"Content-Type {content_type!r} is not supported; send application/x-protobuf or application/json"
    )


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """`body` decoded per Content-Encoding (identity, gzip, deflate), never past `max_bytes`."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity", "none"):
        if len(body) > max_bytes:
            raise PayloadTooLarge(max_bytes, len(body))
        return body
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise UnsupportedMediaType(
            f"Content-Encoding {content_encoding!r} is not supported; send gzip, deflate or no encoding"
        )
    inflater = zlib.decompressobj(wbits)
    try:
        # Bounded, so a small bomb cannot inflate past the limit in memory.
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise DecodeError(f"the body is not valid {encoding} data: {exc}") from None
    if len(out) > max_bytes:
        raise PayloadTooLarge(max_bytes)
    if not inflater.eof:
        raise DecodeError(f"the {encoding} body is truncated")
    return out


def decode_otlp_request(
    signal: Signal, body: bytes, content_type: str, content_encoding: str | None, max_bytes: int
) -> DecodeResult:
    """Decode one OTLP Export request body into rows (the entry point of decode workers)."""
    kind = media_type(content_type)
    raw = decompress(body, content_encoding, max_bytes)
    return _DECODERS[(signal, kind)](raw)
