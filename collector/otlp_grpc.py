"""OTLP/gRPC receiver: the ``TraceService``, ``MetricsService`` and ``LogsService`` Export methods.

The method is registered with a pass-through deserializer, so the request arrives as raw
bytes and is decoded by the decode pool (in worker processes) rather than parsed into
Python objects on the event loop. Errors map as the OTLP specification says: bad data is
INVALID_ARGUMENT with ``BadRequest``; a missing or unknown bearer token UNAUTHENTICATED and
one without the ``ingest`` scope PERMISSION_DENIED (when auth is on); a full pipeline is RESOURCE_EXHAUSTED and a store
outage UNAVAILABLE, both with ``RetryInfo`` so clients retry after the delay. A message over
the size limit is RESOURCE_EXHAUSTED without RetryInfo (not retryable), counted as
``too_large``. grpcio refuses a message over its own limit before any handler sees it
(grpc/grpc#27996), so its limit is `GRPC_LIMIT_FACTOR` times Vigil's: Vigil refuses and counts
everything up to that; only larger messages are refused by grpcio, uncounted.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from vigil.auth import Tokens, ingest_refusal
from vigil.collector.decode.otlp import PROTOBUF, Signal
from vigil.collector.ingest import OtlpIngest, export_response
from vigil.errors import Backpressure, PermanentError, RetryableError

__all__ = ["GRPC_LIMIT_FACTOR", "OtlpGrpcReceiver"]

# How far past VIGIL_MAX_GRPC_MESSAGE_BYTES grpcio still reads a message, so that Vigil can count
# and explain the refusal; what a call may hold in memory grows by the same factor.
GRPC_LIMIT_FACTOR = 2

logger = logging.getLogger(__name__)

_SERVICES: dict[Signal, str] = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
}


def _status(code: int, message: str, retry_after_s: float | None = None) -> grpc.Status:
    status = status_pb2.Status(code=code, message=message)
    if retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(retry_after_s * 1000))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    elif code == code_pb2.INVALID_ARGUMENT:
        status.details.add().Pack(
            error_details_pb2.BadRequest(
                field_violations=[error_details_pb2.BadRequest.FieldViolation(field="request", description=message)]
            )
        )
    return rpc_status.to_status(status)


_HOW_TO_SEND = "`authorization: Bearer <secret>` metadata"

_Context = grpc.aio.ServicerContext[bytes, Message]


async def _abort(context: _Context, status: grpc.Status) -> NoReturn:
    # grpc-stubs does not declare grpc.aio's abort_with_status, which raises to end the call.
    await context.abort_with_status(status)  # type: ignore[attr-defined]
    raise AssertionError("abort_with_status returned")


class OtlpGrpcReceiver:
    """A grpc.aio server on `address` (``host:port``) serving the OTLP Export methods."""

    def __init__(self, ingest: OtlpIngest, address: str, max_message_bytes: int, tokens: Tokens | None = None) -> None:
        self.ingest = ingest
        # With auth on, callers send `authorization: Bearer <secret>` metadata with the ingest scope.
        self.tokens = tokens if tokens is not None and tokens.required else None
        self.address = address
        self.max_message_bytes = max_message_bytes
        self.port = 0
        self._server: grpc.aio.Server | None = None

    def _handler(self, signal: Signal) -> Callable[[bytes, _Context], Awaitable[Message]]:
        async def export(body: bytes, context: _Context) -> Message:
            if self.tokens is not None:
                await self._authorize(signal, context)
            if len(body) > self.max_message_bytes:
                self.ingest.counts.reject_request(signal, "too_large")
                await _abort(context, _status(code_pb2.RESOURCE_EXHAUSTED, self._too_large(len(body))))
            try:
                result = await self.ingest.export(signal, "grpc", body, PROTOBUF, None)
            except PermanentError as exc:
                await _abort(context, _status(code_pb2.INVALID_ARGUMENT, str(exc)))
            except Backpressure as exc:
                await _abort(context, _status(code_pb2.RESOURCE_EXHAUSTED, str(exc), exc.retry_after_s))
            except RetryableError as exc:
                await _abort(context, _status(code_pb2.UNAVAILABLE, str(exc), exc.retry_after_s))
            except Exception:
                # A bug, not bad input: say so without details, keep serving, and leave a trace in the log.
                logger.exception("OTLP/gRPC %s export failed unexpectedly", signal)
                await _abort(
                    context, _status(code_pb2.INTERNAL, "internal error while accepting the request; see Vigil's log")
                )
            return export_response(signal, result)

        return export

    def _too_large(self, size: int) -> str:
        return (
            f"message of {size} bytes is over the limit of {self.max_message_bytes} bytes "
            "(VIGIL_MAX_GRPC_MESSAGE_BYTES); export smaller batches (the SDK's max_export_batch_size) "
            "or raise the limit"
        )

    async def _authorize(self, signal: Signal, context: _Context) -> None:
        assert self.tokens is not None
        authorization = dict(context.invocation_metadata() or ()).get("authorization")
        refusal = ingest_refusal(self.tokens, authorization if isinstance(authorization, str) else None, _HOW_TO_SEND)
        if refusal is not None:
            self.ingest.counts.unauthorized(signal)
            code = code_pb2.PERMISSION_DENIED if refusal.authenticated else code_pb2.UNAUTHENTICATED
            await _abort(context, _status(code, refusal.message))

    async def start(self) -> None:
        options = [
            ("grpc.max_receive_message_length", GRPC_LIMIT_FACTOR * self.max_message_bytes),
            # Collector processes share the port; the kernel spreads connections across them.
            ("grpc.so_reuseport", 1),
        ]
        server = grpc.aio.server(options=options)
        for signal, service in _SERVICES.items():
            export = grpc.unary_unary_rpc_method_handler(
                self._handler(signal),
                request_deserializer=None,
                response_serializer=lambda message: message.SerializeToString(),
            )
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {"Export": export}),))
        self.port = server.add_insecure_port(self.address)
        if self.port == 0:
            raise OSError(f"cannot bind the OTLP/gRPC port at {self.address}")
        await server.start()
        self._server = server
        logger.info("OTLP/gRPC listening on %s", self.address.rsplit(":", 1)[0] + f":{self.port}")

    async def shutdown(self, grace_s: float = 5.0) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace_s)
