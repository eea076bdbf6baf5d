"""The only writer of signal tables."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pyarrow as pa
import pyarrow.ipc as ipc
from clickhouse_connect.driver.client import Client

from vigil.errors import StoreUnavailable
from vigil.store.client import INSERT_PRIORITY
from vigil.store.schema import METRIC_TABLES

__all__ = ["ConnectingStoreWriter", "StoreWriter"]

logger = logging.getLogger(__name__)

# Tables a collector may write; anything else is a programming error, not a retryable one.
_SIGNAL_TABLES = frozenset({"spans", "logs", "flows", "flow_exporters", *METRIC_TABLES.values()})


class StoreWriter:
    """Inserts Arrow tables into ClickHouse; `insert` returns once ClickHouse has the rows.

    Every failure of the store becomes `StoreUnavailable` so the caller can answer
    "retry later" instead of losing or acknowledging the rows.
    """

    def __init__(self, client: Client, database: str, *, local_files: bool = False) -> None:
        self.client = client
        self.database = database
        # An embedded ClickHouse reads our Arrow files itself; a server must be sent the rows.
        self.local_files = local_files
        self._lock = threading.Lock()

    def insert(self, table: str, rows: pa.Table, *, dedup_token: str | None = None) -> None:
        if table not in _SIGNAL_TABLES:
            raise ValueError(f"{table!r} is not a signal table; expected one of {sorted(_SIGNAL_TABLES)}")
        if rows.num_rows == 0:
            return
        settings = (
            {"insert_deduplication_token": dedup_token, "deduplicate_blocks_in_dependent_materialized_views": 1}
            if dedup_token
            else {}
        ) | {"priority": INSERT_PRIORITY}  # inserts yield to every other query: see vigil.store.client
        try:
            # One insert at a time: concurrent inserts gain nothing on one node and multiply parts.
            with self._lock:
                self.client.insert_arrow(f"{self.database}.{table}", rows, settings=settings)
        except Exception as exc:
            logger.exception("insert of %d rows into %s failed", rows.num_rows, table)
            raise StoreUnavailable(f"ClickHouse did not accept {rows.num_rows} rows for {table}: {exc}") from exc

    def insert_files(self, table: str, directory: Path, names: list[str], *, rows: int, dedup_token: str) -> None:
        """Insert Arrow IPC stream files (one table's rows each, `rows` in all) as one deduplicated insert.

        Embedded ClickHouse reads the files in place (``FROM INFILE`` with a glob); a server is
        sent their rows.
        """
        if table not in _SIGNAL_TABLES:
            raise ValueError(f"{table!r} is not a signal table; expected one of {sorted(_SIGNAL_TABLES)}")
        paths = [directory / name for name in names]
        if not self.local_files:
            tables = []
            for path in paths:
                with ipc.open_stream(pa.memory_map(str(path))) as reader:
                    tables.append(reader.read_all())
            self.insert(table, pa.concat_tables(tables), dedup_token=dedup_token)
            return
        pattern = f"{directory}/{{{','.join(names)}}}" if len(names) > 1 else str(paths[0])
        statement = (
            f"INSERT INTO {self.database}.{table} FROM INFILE {_sql_string(pattern)} "
            f"SETTINGS insert_deduplication_token = {_sql_string(dedup_token)}, "
            f"deduplicate_blocks_in_dependent_materialized_views = 1, priority = {INSERT_PRIORITY} FORMAT ArrowStream"
        )
        try:
            with self._lock:
                self.client.command(statement)
        except Exception as exc:
            logger.exception("insert of %d files into %s failed", len(paths), table)
            raise StoreUnavailable(f"ClickHouse did not accept {rows} rows for {table}: {exc}") from exc


class ConnectingStoreWriter(StoreWriter):
    """A `StoreWriter` that connects on first use, for a collector started while ClickHouse was unreachable.

    `connect` opens the client (and migrates the schema); until it succeeds every insert raises
    `StoreUnavailable`, so the inserter keeps the rows in its log and tries again later.
    """

    def __init__(self, connect: Callable[[], Client], database: str) -> None:
        super().__init__(cast(Client, None), database)  # set by the first successful connect
        self._connect = connect
        self._connected = False

    def _ensure_connected(self) -> None:
        if self._connected:
            return
        try:
            self.client = self._connect()
        except Exception as exc:
            logger.warning("ClickHouse is still unreachable: %s", exc)
            raise StoreUnavailable(f"ClickHouse is unreachable: {exc}") from exc
        self._connected = True
        logger.info("connected to ClickHouse; inserting the rows the write-ahead log kept")

    def insert(self, table: str, rows: pa.Table, *, dedup_token: str | None = None) -> None:
        self._ensure_connected()
        super().insert(table, rows, dedup_token=dedup_token)

    def insert_files(self, table: str, directory: Path, names: list[str], *, rows: int, dedup_token: str) -> None:
        self._ensure_connected()
        super().insert_files(table, directory, names, rows=rows, dedup_token=dedup_token)


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
