"""The seam every collector stage meets at."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from vigil.types import RowBatch

__all__ = ["RowsConsumer"]


@runtime_checkable
class RowsConsumer(Protocol):
    """Takes a batch of rows downstream.

    `consume` returns once the rows are durably written, or raises: a `RetryableError` when
    the caller may try again, a `PermanentError` when it may not. The caller must not touch
    the batch after the call.
    """

    def consume(self, batch: RowBatch) -> None: ...
