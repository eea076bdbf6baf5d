"""Vigil's one exception hierarchy.

    VigilError
    ├── ConfigError            a setting or config file is wrong; fail fast at start
    ├── PermanentError         the input is bad; retrying the same input cannot help
    │   ├── DecodeError        the bytes are not a valid request (HTTP 400 / INVALID_ARGUMENT)
    │   ├── PayloadTooLarge    over the size limit (HTTP 413 / RESOURCE_EXHAUSTED without RetryInfo)
    │   └── UnsupportedMediaType  a content type or encoding we do not speak (HTTP 415)
    └── RetryableError         the input is fine; try again later (429/503 + Retry-After / UNAVAILABLE)
        ├── Backpressure       the pipeline's queue is full
        └── StoreUnavailable   ClickHouse did not accept the write

Receivers catch at this level and map to protocol status codes at the edge; nothing
below the edge knows about HTTP or gRPC.
"""

from __future__ import annotations

__all__ = [
    "Backpressure",
    "ConfigError",
    "DecodeError",
    "PayloadTooLarge",
    "PermanentError",
    "RetryableError",
    "StoreUnavailable",
    "UnsupportedMediaType",
    "VigilError",
]


class VigilError(Exception):
    """Base of every error Vigil raises on purpose."""


class ConfigError(VigilError):
    """A setting or configuration file is invalid; the message names it and the expected form."""


class PermanentError(VigilError):
    """The input cannot be accepted, now or later."""


class DecodeError(PermanentError):
    """A request body could not be decoded; the message names the field or offset."""


class PayloadTooLarge(PermanentError):
    """A request body is over the configured size limit (measured after decompression).

    `size` is None when a compressed body was stopped while inflating past the limit.
    """

    def __init__(self, limit: int, size: int | None = None) -> None:
        problem = (
            f"request body is {size} bytes, over the limit of {limit} bytes"
            if size is not None
            else f"request body inflates past the limit of {limit} bytes"
        )
        super().__init__(
            f"{problem} after decompression; send smaller batches "
            "(e.g. OTEL_BSP_MAX_EXPORT_BATCH_SIZE) or raise VIGIL_MAX_REQUEST_BYTES"
        )
        self.limit = limit
        self.size = size

    def __reduce__(self) -> tuple[type[PayloadTooLarge], tuple[int, int | None]]:
        # Decoding runs in worker processes; errors must survive the trip back.
        return (PayloadTooLarge, (self.limit, self.size))


class UnsupportedMediaType(PermanentError):
    """A content type or content encoding that the receiver does not speak."""


class RetryableError(VigilError):
    """The request was fine but cannot be taken now; the client should retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[type[RetryableError], tuple[str, float]]:
        return (type(self), (str(self), self.retry_after_s))


class Backpressure(RetryableError):
    """The pipeline's bounded queue is full; refusing is better than dropping."""


class StoreUnavailable(RetryableError):
    """ClickHouse did not take the write (down, unreachable, or rejecting inserts)."""
