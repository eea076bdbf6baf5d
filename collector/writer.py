"""The last collector stage: rows into ClickHouse through `vigil.store.write`."""

from __future__ import annotations

from vigil.store.write import StoreWriter
from vigil.types import RowBatch

__all__ = ["StoreRowsWriter"]


class StoreRowsWriter:
    """A `RowsConsumer` that inserts each batch and returns once ClickHouse has it.

    Failures surface as `StoreUnavailable` (retryable), which the receivers turn into
    503 / UNAVAILABLE with Retry-After, so an unwritten batch is never acknowledged.
    """

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer

    def consume(self, batch: RowBatch) -> None:
        self.writer.insert(batch.table, batch.rows)

    def start(self) -> None:
        pass

    def shutdown(self) -> None:
        pass
