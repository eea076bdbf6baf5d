"""OTLP/HTTP receiver: ``POST /v1/traces``, ``/v1/metrics`` and ``/v1/logs``, protobuf or JSON, plain or gzip.

Status codes follow the OTLP specification: 200 (with ``partial_success`` when some items
were rejected), 400 for a body that cannot be decoded, 401 without a known bearer token and
403 for one without the ``ingest`` scope (when auth is on), 413 over the size limit, 415 for
other media types, 429 when the pipeline is full and 503 when the store is down, both with
``Retry-After``. Error bodies are ``google.rpc.Status`` in the request's own encoding.
Chunked bodies (the Node exporters send no Content-Length) are read with the same cap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vigil.auth import Tokens, ingest_refusal
from vigil.collector.decode.otlp import JSON, Signal, media_type
from vigil.collector.ingest import OtlpIngest, export_response
from vigil.errors import (
    Backpressure,
    PayloadTooLarge,
    PermanentError,
    RetryableError,
    UnsupportedMediaType,
)

__all__ = ["create_otlp_http_app"]

logger = logging.getLogger(__name__)

_HOW_TO_SEND = "Authorization: Bearer <secret>"
# gzip of incompressible data is slightly larger than the data; allow for it on the wire.
_WIRE_SLACK_BYTES = 64 * 1024


def _encode(message: Message, kind: str) -> bytes:
    if kind == JSON:
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


def _status_response(
    http_status: int, code: int, message: str, kind: str, retry_after: float | None = None
) -> Response:
    status = status_pb2.Status(code=code, message=message)
    if code == code_pb2.INVALID_ARGUMENT:
        status.details.add().Pack(
            error_details_pb2.BadRequest(
                field_violations=[error_details_pb2.BadRequest.FieldViolation(field="body", description=message)]
            )
        )
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else None
    return Response(_encode(status, kind), status_code=http_status, media_type=kind, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused as soon as it is over `limit` (plus slack for compression overhead)."""
    wire_limit = limit + _WIRE_SLACK_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > wire_limit:
        raise PayloadTooLarge(limit, int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > wire_limit:
            raise PayloadTooLarge(limit, size)
        chunks.append(chunk)
    return b"".join(chunks)


def create_otlp_http_app(ingest: OtlpIngest, max_request_bytes: int, tokens: Tokens | None = None) -> Starlette:
    """The ASGI app for the OTLP/HTTP port; with `tokens` requiring auth, senders need the ingest scope."""

    required = tokens if tokens is not None and tokens.required else None

    def endpoint(signal: Signal) -> Callable[[Request], Any]:
        async def export(request: Request) -> Response:
            unsupported: UnsupportedMediaType | None = None
            try:
                kind = media_type(request.headers.get("content-type", ""))
            except UnsupportedMediaType as exc:
                kind, unsupported = JSON, exc
            # Before the body is read, so an unauthenticated sender cannot make Vigil inflate it.
            if required is not None and (
                refusal := ingest_refusal(required, request.headers.get("authorization"), _HOW_TO_SEND)
            ):
                ingest.counts.unauthorized(signal)
                if refusal.authenticated:
                    return _status_response(403, code_pb2.PERMISSION_DENIED, refusal.message, kind)
                response = _status_response(401, code_pb2.UNAUTHENTICATED, refusal.message, kind)
                response.headers["WWW-Authenticate"] = 'Bearer realm="vigil"'
                return response
            if unsupported is not None:
                ingest.counts.reject_request(signal, "unsupported")
                return _status_response(415, code_pb2.INVALID_ARGUMENT, str(unsupported), JSON)
            try:
                body = await _read_body(request, max_request_bytes)
            except PayloadTooLarge as exc:
                ingest.counts.reject_request(signal, "too_large")  # past ingest.export, which counts its own
                return _status_response(413, code_pb2.RESOURCE_EXHAUSTED, str(exc), kind)
            try:
                result = await ingest.export(signal, "http", body, kind, request.headers.get("content-encoding"))
            except PayloadTooLarge as exc:  # the body inflated past the limit
                return _status_response(413, code_pb2.RESOURCE_EXHAUSTED, str(exc), kind)
            except UnsupportedMediaType as exc:
                return _status_response(415, code_pb2.INVALID_ARGUMENT, str(exc), kind)
            except PermanentError as exc:
                return _status_response(400, code_pb2.INVALID_ARGUMENT, str(exc), kind)
            except Backpressure as exc:
                return _status_response(429, code_pb2.RESOURCE_EXHAUSTED, str(exc), kind, exc.retry_after_s)
            except RetryableError as exc:
                return _status_response(503, code_pb2.UNAVAILABLE, str(exc), kind, exc.retry_after_s)
            except Exception:
                # A bug, not bad input: say so without details, keep serving, and leave a trace in the log.
                logger.exception("OTLP/HTTP %s export failed unexpectedly", signal)
                return _status_response(
                    500, code_pb2.INTERNAL, "internal error while accepting the request; see Vigil's log", kind
                )
            return Response(_encode(export_response(signal, result), kind), status_code=200, media_type=kind)

        return export

    return Starlette(
        routes=[
            Route("/v1/traces", endpoint("traces"), methods=["POST"]),
            Route("/v1/logs", endpoint("logs"), methods=["POST"]),
            Route("/v1/metrics", endpoint("metrics"), methods=["POST"]),
        ]
    )
