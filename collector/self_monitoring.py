"""The collector's own numbers: what its receivers passed on or refused, and how far ClickHouse lags behind.

- `CountingSubmitter` counts what the StatsD and NetFlow receivers hand the batcher (OTLP counts
  in `OtlpIngest`), into the collector's `PipelineCounts`.
- A collector process leaves its `CollectorSnapshot` in its log directory (`snapshot_path`) about
  once a second (`leave_snapshots`); the parent reads the files when `/metrics` is scraped.
- `wal_backlog` reads the logs' backlog from disk: the spill queue and the ingest lag.
- `SelfSampler` writes the ingest lag and the refused, dropped and rejected items of each interval
  into the metric tables as service "vigil", so that the detectors, possibly in another process
  (`vigil detect`), raise findings on them (`vigil.detectors.self_monitoring`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pyarrow as pa

from vigil.collector.forwarding import BatchSubmitter
from vigil.collector.wal import LOG_PREFIX
from vigil.errors import Backpressure, PayloadTooLarge, PermanentError, RetryableError, UnsupportedMediaType, VigilError
from vigil.self_metrics import (
    DROPPED_METRIC,
    INGEST_LAG_METRIC,
    REFUSED_METRIC,
    REJECTED_METRIC,
    REJECTED_REQUESTS_METRIC,
    SELF_SERVICE,
    CollectorSnapshot,
    PipelineCounts,
    WalBacklog,
    write_snapshot,
)
from vigil.store.schema import METRIC_ARROW_SCHEMAS
from vigil.store.write import StoreWriter
from vigil.types import RowBatch, rows_table

__all__ = [
    "SNAPSHOT_FILE",
    "CountingSubmitter",
    "SelfSampler",
    "leave_snapshots",
    "refusal_reason",
    "snapshot_path",
    "wal_backlog",
]

logger = logging.getLogger(__name__)

# A collector's snapshot, inside its log directory (the inserter reads only segments and manifests there).
SNAPSHOT_FILE = "metrics.json"
_SNAPSHOT_INTERVAL_S = 1.0
_NS = 1_000_000_000
_DELTA = 1  # OTLP AggregationTemporality
# Unit and description of each metric the sampler writes.
_METRICS = {
    INGEST_LAG_METRIC: ("s", "age of the oldest acknowledged data not yet in ClickHouse"),
    REFUSED_METRIC: ("{item}", "items refused with retry-later (429, 503, 500) since the previous sample"),
    DROPPED_METRIC: ("{item}", "StatsD and NetFlow rows lost since the previous sample"),
    REJECTED_METRIC: ("{item}", "invalid items refused since the previous sample"),
    REJECTED_REQUESTS_METRIC: (
        "{request}",
        "requests refused for good (400 undecodable, 413 too large, 415 unsupported) since the previous sample",
    ),
}


def refusal_reason(error: BaseException) -> str:
    """How a refusal was answered: ``backpressure`` (429), ``unavailable`` (503) or ``error`` (500)."""
    if isinstance(error, Backpressure):
        return "backpressure"
    if isinstance(error, RetryableError):
        return "unavailable"
    return "error"


def rejection_reason(error: PermanentError) -> str:
    """Why a whole request was refused for good: ``too_large`` (413), ``unsupported`` (415) or
    ``undecodable`` (400)."""
    if isinstance(error, PayloadTooLarge):
        return "too_large"
    if isinstance(error, UnsupportedMediaType):
        return "unsupported"
    return "undecodable"


def snapshot_path(wal_root: str | Path, wal_name: str) -> Path:
    return Path(wal_root) / wal_name / SNAPSHOT_FILE


class CountingSubmitter:
    """A `BatchSubmitter` in front of the batcher that counts what a UDP receiver hands on.

    Refused rows (the receiver keeps them and offers them again) count as refused each time; rows
    whose write failed are lost (the receiver does not keep them) and count as dropped. With
    `accepted_table`, rows of that table written count as accepted items.
    """

    def __init__(
        self, consumer: BatchSubmitter, counts: PipelineCounts, signal: str, accepted_table: str | None = None
    ) -> None:
        self.consumer = consumer
        self.counts = counts
        self.signal = signal
        self.accepted_table = accepted_table

    def submit_all(self, batches: Sequence[RowBatch]) -> list[Future[None]]:
        try:
            futures = self.consumer.submit_all(batches)
        except Exception as exc:
            self.counts.refuse(self.signal, refusal_reason(exc), sum(batch.num_rows for batch in batches))
            raise
        for batch, future in zip(batches, futures, strict=True):
            future.add_done_callback(functools.partial(self._written, table=batch.table, rows=batch.num_rows))
        return futures

    def _written(self, future: Future[None], *, table: str, rows: int) -> None:
        if future.exception() is not None:
            self.counts.drop(self.signal, rows)
        elif table == self.accepted_table:
            self.counts.accept(self.signal, rows)


async def leave_snapshots(
    snapshot: Callable[[], CollectorSnapshot], path: Path, stop: asyncio.Event, interval: float = _SNAPSHOT_INTERVAL_S
) -> None:
    """Write `snapshot()` to `path` every `interval` seconds until `stop` is set."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        if stop.is_set():
            return
        try:
            await asyncio.to_thread(write_snapshot, path, snapshot())
        except OSError:
            # Metrics are worth less than the collector: carry on, and say why the numbers stand still.
            logger.exception("cannot write this collector's metrics to %s", path)


def wal_backlog(root: Path, limit_bytes: int) -> WalBacklog:
    """What every collector's log under `root` holds that ClickHouse does not have yet (read from disk)."""
    segments = size = 0
    oldest: float | None = None
    for path in root.glob(f"{LOG_PREFIX}*/*.arrow"):
        try:
            stat = path.stat()
        except FileNotFoundError:  # inserted and deleted meanwhile
            continue
        segments += 1
        size += stat.st_size
        # A segment is renamed into place, then acknowledged: its time is when its rows were acknowledged.
        oldest = stat.st_mtime if oldest is None else min(oldest, stat.st_mtime)
    return WalBacklog(segments=segments, bytes=size, oldest=oldest, limit_bytes=limit_bytes)


def _metric_rows(table: str, points: list[dict[str, Any]]) -> pa.Table:
    schema = METRIC_ARROW_SCHEMAS[table]
    rows = []
    for point in points:
        row: dict[str, Any] = {}
        for column in schema:
            if pa.types.is_list(column.type) or pa.types.is_map(column.type):
                row[column.name] = []
            elif pa.types.is_string(column.type):
                row[column.name] = ""
            elif pa.types.is_boolean(column.type):
                row[column.name] = False
            else:
                row[column.name] = 0
        row.update(point)
        rows.append(row)
    return rows_table(schema, rows)


class SelfSampler:
    """Every `interval` seconds, writes this Vigil's ingest lag and drops into the metric tables.

    Rows are of service "vigil" with attribute ``instance`` (the host), through `writer` like
    any signal: the gauge ``vigil.ingest.lag`` (seconds; see `WalBacklog.lag`), and delta sums of
    the items refused (by ``signal`` and ``reason``), dropped and rejected, and of the requests
    rejected, since the previous sample written (only those that moved). While ClickHouse is
    unavailable a sample cannot be written: its lag is lost (``/readyz`` and ``/metrics`` speak for
    that time), and its counts are carried into the next sample written, so what was refused
    during an outage becomes a finding once ClickHouse answers again.
    """

    def __init__(
        self,
        writer: StoreWriter,
        backlog: Callable[[], WalBacklog],
        snapshots: Callable[[], Mapping[str, CollectorSnapshot]],
        *,
        interval: float,
        instance: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.writer = writer
        self.backlog = backlog
        self.snapshots = snapshots
        self.interval = interval
        self.instance = instance
        self.clock = clock
        self._previous: dict[tuple[str, str, str], int] = {}
        self._previous_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self, now: float | None = None) -> list[RowBatch]:
        """The rows of a sample at `now`: the lag now, and the counts that moved since the last sample written."""
        return self._sample(self.clock() if now is None else now)[0]

    def _sample(self, now: float) -> tuple[list[RowBatch], dict[tuple[str, str, str], int]]:
        start = now if self._previous_at is None else self._previous_at
        totals = self._totals()
        points: list[dict[str, Any]] = []
        for (metric, signal, reason), total in sorted(totals.items()):
            previous = self._previous.get((metric, signal, reason), 0)
            # A collector that restarted counts from 0 again: all of its count is new.
            delta = total - previous if total >= previous else total
            if delta:
                attributes = {"instance": self.instance, "signal": signal, **({"reason": reason} if reason else {})}
                points.append(self._point(metric, attributes, start, now) | {"Value": float(delta)})
        lag = self._point(INGEST_LAG_METRIC, {"instance": self.instance}, now, now) | {"Value": self.backlog().lag(now)}
        batches = [RowBatch("metrics_gauge", _metric_rows("metrics_gauge", [lag]))]
        if points:
            sums = [p | {"AggregationTemporality": _DELTA, "IsMonotonic": True} for p in points]
            batches.append(RowBatch("metrics_sum", _metric_rows("metrics_sum", sums)))
        return batches, totals

    def _totals(self) -> dict[tuple[str, str, str], int]:
        totals: dict[tuple[str, str, str], int] = {}

        def add(key: tuple[str, str, str], value: int) -> None:
            totals[key] = totals.get(key, 0) + value

        for snapshot in self.snapshots().values():
            for signal, reasons in snapshot.refused.items():
                for reason, items in reasons.items():
                    add((REFUSED_METRIC, signal, reason), items)
            for signal, items in snapshot.dropped.items():
                add((DROPPED_METRIC, signal, ""), items)
            for signal, items in snapshot.rejected.items():
                add((REJECTED_METRIC, signal, ""), items)
            for signal, reasons in snapshot.rejected_requests.items():
                for reason, requests in reasons.items():
                    add((REJECTED_REQUESTS_METRIC, signal, reason), requests)
        return totals

    @staticmethod
    def _point(metric: str, attributes: dict[str, str], start: float, now: float) -> dict[str, Any]:
        return {
            "ServiceName": SELF_SERVICE,
            "ResourceAttributes": [("service.name", SELF_SERVICE)],
            "ScopeName": "vigil.self_monitoring",
            "MetricName": metric,
            "MetricUnit": _METRICS[metric][0],
            "MetricDescription": _METRICS[metric][1],
            "Attributes": sorted(attributes.items()),
            "StartTimeUnix": int(start * _NS),
            "TimeUnix": int(now * _NS),
        }

    def write_sample(self, now: float | None = None) -> bool:
        """Take a sample and write it; False when ClickHouse did not take it (its counts go into the next one)."""
        now = self.clock() if now is None else now
        batches, totals = self._sample(now)
        try:
            for batch in batches:
                self.writer.insert(batch.table, batch.rows)
        except VigilError as exc:
            logger.warning("Vigil's own ingest metrics were not written (%s); /metrics still has them", exc)
            return False
        self._previous, self._previous_at = totals, now
        return True

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="vigil-self-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.write_sample()
            except Exception:  # a sampler that died silently would look like a healthy Vigil
                logger.exception("sampling Vigil's own ingest metrics failed; retrying next interval")

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
