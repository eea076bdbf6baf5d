"""The two seams every collector stage meets at."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from vigil.types import RowBatch

__all__ = ["Component", "RowsConsumer"]


@runtime_checkable
class RowsConsumer(Protocol):
    """Takes a batch of rows downstream.

    `consume` returns once the rows are durably written, or raises: a `RetryableError` when
    the caller may try again, a `PermanentError` when it may not. The caller must not touch
    the batch after the call.
    """

    def consume(self, batch: RowBatch) -> None: ...


@runtime_checkable
class Component(Protocol):
    """A long-lived part: `start` opens it, `shutdown` flushes and closes it.

    `shutdown` is idempotent and safe before `start`.
    """

    def start(self) -> None: ...

    def shutdown(self) -> None: ...
