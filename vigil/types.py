"""Shared records that cross stage boundaries."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = ["DecodeResult", "RowBatch", "rows_table"]


def rows_table(schema: pa.Schema, rows: list[dict[str, object]]) -> pa.Table:
    """A table of `schema` from rows as dicts; timestamps are given as integers in the column's unit.

    >>> rows_table(pa.schema([("t", pa.timestamp("ns", tz="UTC"))]), [{"t": 5}]).column("t")[0].value
    5
    """
    arrays = []
    for field in schema:
        values = [row[field.name] for row in rows]
        if pa.types.is_timestamp(field.type):
            arrays.append(pa.array(values, pa.int64()).cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


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
