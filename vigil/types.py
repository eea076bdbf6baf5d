"""Shared records that cross stage boundaries."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = ["DecodeResult", "RowBatch"]


@dataclass(frozen=True, slots=True)
class RowBatch:
    """Rows for one table, column-wise: `rows` has exactly the table's Arrow schema."""

    table: str
    rows: pa.Table

    @property
    def num_rows(self) -> int:
        return int(self.rows.num_rows)


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """What a decoder made of one request: the good rows, and how many items it rejected and why.

    `batches` holds one `RowBatch` per table the request fills (metrics span several tables).
    `rejected` and `error_message` become OTLP ``partial_success``; the good rows are kept.
    """

    batches: tuple[RowBatch, ...]
    rejected: int = 0
    error_message: str = ""

    @property
    def num_rows(self) -> int:
        return sum(batch.num_rows for batch in self.batches)
