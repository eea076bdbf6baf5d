"""Real objects for tests: a consumer that keeps what it is given."""

from __future__ import annotations

import threading

import pyarrow as pa

from vigil.types import RowBatch

__all__ = ["SinkConsumer"]


class SinkConsumer:
    """A `RowsConsumer` that stores every batch, like the Collector's consumertest sink.

    >>> sink = SinkConsumer()
    >>> sink.consume(RowBatch("spans", pa.table({"x": [1]})))
    >>> sink.rows("spans"), len(sink.batches)
    (1, 1)
    """

    def __init__(self) -> None:
        self.batches: list[RowBatch] = []
        self._lock = threading.Lock()
        self.error: BaseException | None = None

    def consume(self, batch: RowBatch) -> None:
        if self.error is not None:
            raise self.error
        with self._lock:
            self.batches.append(batch)

    def rows(self, table: str) -> int:
        with self._lock:
            return sum(b.num_rows for b in self.batches if b.table == table)

    def table(self, table: str) -> pa.Table:
        with self._lock:
            return pa.concat_tables([b.rows for b in self.batches if b.table == table])
