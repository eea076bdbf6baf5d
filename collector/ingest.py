"""The path every OTLP receiver shares: decode, queue, wait for the durable write.

Receivers own only their protocol (HTTP or gRPC framing and status codes); what happens
to a body is here, once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from vigil.collector.batcher import Batcher
from vigil.collector.decode.otlp import Signal
from vigil.collector.decode_pool import DecodePool
from vigil.collector.request_dedup import RequestDedup
from vigil.collector.self_monitoring import refusal_reason, rejection_reason
from vigil.errors import PermanentError
from vigil.self_metrics import PipelineCounts
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

    def __init__(
        self,
        decode_pool: DecodePool,
        next_consumer: Batcher,
        dedup: RequestDedup | None = None,
        counts: PipelineCounts | None = None,
    ) -> None:
        self.decode_pool = decode_pool
        self.next_consumer = next_consumer
        # Recognises an exporter's retry of a request already written (None: every request is written).
        self.dedup = dedup
        # The collector's counts (Vigil's /metrics); a private set when none is given.
        self.counts = counts if counts is not None else PipelineCounts()
        self._last_rejection_log = 0.0

    async def export(
        self, signal: Signal, transport: str, body: bytes, content_type: str, content_encoding: str | None
    ) -> DecodeResult:
        try:
            return await self._export(signal, transport, body, content_type, content_encoding)
        except PermanentError as exc:
            # The body could not be read at all, so its items cannot be counted: the request is.
            self.counts.reject_request(signal, rejection_reason(exc))
            raise

    async def _export(
        self, signal: Signal, transport: str, body: bytes, content_type: str, content_encoding: str | None
    ) -> DecodeResult:
        if self.dedup is None:
            result = await self.decode_pool.decode(signal, body, content_type, content_encoding)
            await self._write(signal, result)
        else:
            digest, result = await self.decode_pool.decode_with_digest(signal, body, content_type, content_encoding)
            if len(result.batches) < 2:
                repeat = await self.dedup.once(digest, lambda: self._write(signal, result))
            else:
                # Several tables: those written before a refusal are not written again on the retry.
                parts = [f"{index}:{batch.table}" for index, batch in enumerate(result.batches)]
                repeat = await self.dedup.once_per_part(
                    digest, parts, lambda todo: self._write_batches(signal, result, todo)
                )
            if repeat:
                # Already stored: answered as the first was (same bytes, same partial success), not counted again.
                return result
        self.counts.accept(signal, result.num_rows)
        if result.rejected:
            # OTel's Python exporters ignore partial_success, so the count must be visible here.
            self.counts.reject(signal, result.rejected)
            now = time.monotonic()
            if now - self._last_rejection_log >= _REJECTION_LOG_INTERVAL_S:
                self._last_rejection_log = now
                logger.warning("rejected %s over %s: %s", signal, transport, result.error_message)
        return result

    async def _write(self, signal: Signal, result: DecodeResult) -> None:
        outcomes = await self._write_batches(signal, result, range(len(result.batches)))
        failure = next((outcome for outcome in outcomes if outcome is not None), None)
        if failure is not None:
            raise failure

    async def _write_batches(
        self, signal: Signal, result: DecodeResult, indexes: Sequence[int]
    ) -> list[BaseException | None]:
        """Write `result`'s batches at `indexes` (queued all or none); each one's outcome, None once durable.

        On any failure the whole request is refused (counted as such): the client resends all of it.
        """
        batches = [result.batches[index] for index in indexes]
        outcomes: list[BaseException | None] = []
        try:
            # Queue every table's rows before waiting, so they share the next group commit.
            writes = self.next_consumer.submit_all(batches)
        except Exception as exc:
            outcomes = [exc] * len(batches)
        else:
            for write in writes:
                try:
                    await asyncio.wrap_future(write)
                    outcomes.append(None)
                except Exception as exc:
                    outcomes.append(exc)
        failure = next((outcome for outcome in outcomes if outcome is not None), None)
        if failure is not None:
            self.counts.refuse(signal, refusal_reason(failure), result.num_rows)
        return outcomes
