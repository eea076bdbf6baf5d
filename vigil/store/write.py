"""The only writer of signal tables."""

from __future__ import annotations

import logging
import threading

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from vigil.errors import StoreUnavailable

__all__ = ["StoreWriter"]

logger = logging.getLogger(__name__)

# Tables a collector may write; anything else is a programming error, not a retryable one.
_SIGNAL_TABLES = frozenset({"spans"})


class StoreWriter:
    """Inserts Arrow tables into ClickHouse; `insert` returns once ClickHouse has the rows.

    Every failure of the store becomes `StoreUnavailable` so the caller can answer
    "retry later" instead of losing or acknowledging the rows.
    """

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database
        self._lock = threading.Lock()

    def insert(self, table: str, rows: pa.Table, *, dedup_token: str | None = None) -> None:
        if table not in _SIGNAL_TABLES:
            raise ValueError(f"{table!r} is not a signal table; expected one of {sorted(_SIGNAL_TABLES)}")
        if rows.num_rows == 0:
            return
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        try:
            # One insert at a time: concurrent inserts gain nothing on one node and multiply parts.
            with self._lock:
                self.client.insert_arrow(f"{self.database}.{table}", rows, settings=settings)
        except Exception as exc:
            logger.exception("insert of %d rows into %s failed", rows.num_rows, table)
            raise StoreUnavailable(f"ClickHouse did not accept {rows.num_rows} rows for {table}: {exc}") from exc
