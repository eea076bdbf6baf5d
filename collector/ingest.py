"""The path every OTLP receiver shares: decode, queue, wait for the durable write.

Receivers own only their protocol (HTTP or gRPC framing and status codes); what happens
to a body is here, once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from google.protobuf.message import Message
from opentelemetry import metrics
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from vigil.collector.batcher import Batcher
from vigil.collector.decode.otlp import Signal
from vigil.collector.decode_pool import DecodePool
from vigil.types import DecodeResult

__all__ = ["OtlpIngest", "export_response"]

logger = logging.getLogger(__name__)

# Sampling rejected-item messages into Vigil's own log: at most one line per interval.
_REJECTION_LOG_INTERVAL_S = 10.0


# Each signal's response message and the name of its partial_success count.
_RESPONSES: dict[Signal, tuple[type[Message], str]] = {
    "traces": (ExportTraceServiceResponse, "rejected_spans"),
    "logs": (ExportLogsServiceResponse, "rejected_log_records"),
    "metrics": (ExportMetricsServiceResponse, "rejected_data_points"),
}


def export_response(signal: Signal, result: DecodeResult) -> Message:
    """The Export*ServiceResponse for `result`: empty on full success, else `partial_success`."""
    message_type, rejected_field = _RESPONSES[signal]
    response: Any = message_type()  # each type has partial_success; no common base declares it
    if result.rejected or result.error_message:
        setattr(response.partial_success, rejected_field, result.rejected)
        response.partial_success.error_message = result.error_message
    return response  # type: ignore[no-any-return]


class OtlpIngest:
    """Decode an OTLP body in the pool, queue its rows, and return once they are written.

    Raises the `VigilError` that explains a refusal; the receiver maps it to its protocol.
    """

    def __init__(self, decode_pool: DecodePool, next_consumer: Batcher) -> None:
        self.decode_pool = decode_pool
        self.next_consumer = next_consumer
        meter = metrics.get_meter("vigil.collector.receiver")
        self._accepted = meter.create_counter("vigil.receiver.accepted_items", unit="{item}")
        self._rejected = meter.create_counter("vigil.receiver.rejected_items", unit="{item}")
        self._last_rejection_log = 0.0

    async def export(
        self, signal: Signal, transport: str, body: bytes, content_type: str, content_encoding: str | None
    ) -> DecodeResult:
        result = await self.decode_pool.decode(signal, body, content_type, content_encoding)
        # Queue every table's rows before waiting, so they share the next group commit.
        for write in self.next_consumer.submit_all(result.batches):
            await asyncio.wrap_future(write)
        attributes = {"signal": signal, "transport": transport}
        self._accepted.add(result.num_rows, attributes)
        if result.rejected:
            # OTel's Python exporters ignore partial_success, so the count must be visible here.
            self._rejected.add(result.rejected, attributes)
            now = time.monotonic()
            if now - self._last_rejection_log >= _REJECTION_LOG_INTERVAL_S:
                self._last_rejection_log = now
                logger.warning("rejected %s over %s: %s", signal, transport, result.error_message)
        return result
