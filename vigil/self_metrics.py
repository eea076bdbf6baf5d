"""Vigil's own metrics, served at ``GET /metrics`` in Prometheus' text format (prometheus-client).

Every Vigil owns one `SelfMetrics`, whose `CollectorRegistry` holds only that Vigil's metrics:
tests run several Vigils in one process, so nothing here is process-global. Parts record into
objects they are handed, never into a default registry:

- **Collectors** count into a `PipelineCounts` (plain, thread-safe numbers). A collector in a
  child process leaves a `CollectorSnapshot` of them as JSON beside its log about once a second
  (and at shutdown); the process that serves ``/metrics`` reads every collector's snapshot at
  scrape time (`CollectorFamilies`), one ``collector`` label per collector. Counters therefore
  reach the parent without shared memory and without prometheus-client's multiprocess mode
  (which needs an environment variable set before import).
- **The inserter** records into `InserterMetrics`, **detectors** into `DetectorMetrics`, the
  **alert loop** into `AlertMetrics`; each makes its families once per Vigil, so a detector
  engine re-created on each election records into the same series.
- **The write-ahead log** backlog is read from disk at scrape time (`WalFamilies`).
- **HTTP requests** to the API, the pages and the probes are timed by an ASGI middleware
  (`MeasureRequests`) into `SelfMetrics.requests`, by route template, method and status.

Names follow Prometheus' conventions: ``vigil_`` prefix, base units in the name, ``_total``
counters.

>>> metrics = SelfMetrics()
>>> counts = PipelineCounts()
>>> counts.accept("traces", 3)
>>> metrics.register(CollectorFamilies(lambda: {"collector-0": counts.snapshot()}))
>>> for line in metrics.exposition().decode().splitlines():
...     if line.startswith("vigil_receiver_accepted_items_total"):
...         print(line)
vigil_receiver_accepted_items_total{collector="collector-0",signal="flows"} 0.0
vigil_receiver_accepted_items_total{collector="collector-0",signal="logs"} 0.0
vigil_receiver_accepted_items_total{collector="collector-0",signal="metrics"} 0.0
vigil_receiver_accepted_items_total{collector="collector-0",signal="statsd"} 0.0
vigil_receiver_accepted_items_total{collector="collector-0",signal="traces"} 3.0
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vigil.telemetry import route_template

__all__ = [
    "CONTENT_TYPE",
    "DROPPED_METRIC",
    "INGEST_LAG_METRIC",
    "REFUSAL_REASONS",
    "REFUSED_METRIC",
    "REJECTED_METRIC",
    "REJECTED_REQUESTS_METRIC",
    "REJECTION_REASONS",
    "SELF_SERVICE",
    "SIGNALS",
    "AlertMetrics",
    "CollectorFamilies",
    "CollectorSnapshot",
    "DetectorMetrics",
    "InserterMetrics",
    "MeasureRequests",
    "PipelineCounts",
    "RequestMetrics",
    "SelfMetrics",
    "WalBacklog",
    "WalFamilies",
    "read_snapshot",
    "write_snapshot",
]

# What /metrics answers with: Prometheus' text exposition format 0.0.4.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

# Vigil's own samples in its metric tables (written by the collector role, judged by the detectors).
SELF_SERVICE: Final = "vigil"
INGEST_LAG_METRIC: Final = "vigil.ingest.lag"  # gauge, seconds: see `WalBacklog.lag`
# Delta sums per sample interval, attributes `signal` (and `reason` for refusals).
REFUSED_METRIC: Final = "vigil.receiver.refused_items"
DROPPED_METRIC: Final = "vigil.receiver.dropped_items"
REJECTED_METRIC: Final = "vigil.receiver.rejected_items"
REJECTED_REQUESTS_METRIC: Final = "vigil.receiver.rejected_requests"

# What a collector receives: the OTLP signals, StatsD lines and NetFlow/IPFIX flow records.
SIGNALS: Final = ("traces", "logs", "metrics", "statsd", "flows")
# Why items were refused with "retry later": 429 / RESOURCE_EXHAUSTED (queue or log full),
# 503 / UNAVAILABLE (ClickHouse down and the log full), or 500 / INTERNAL (a bug; see the log).
REFUSAL_REASONS: Final = ("backpressure", "unavailable", "error")
# Why whole requests were refused for good: 400 / INVALID_ARGUMENT (undecodable), 413 (over the
# size limit, as sent or once inflated), 415 (a media type or content encoding Vigil does not read).
REJECTION_REASONS: Final = ("undecodable", "too_large", "unsupported")

# An insert moves up to VIGIL_INSERT_ROWS rows: milliseconds when healthy, seconds when ClickHouse struggles.
_INSERT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# An API answer or a page: a few milliseconds from memory, seconds for a heavy query over a big store.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The route label of requests no route matched (404s): their paths are unbounded, so never a label.
UNMATCHED_ROUTE: Final = "unmatched"
# A detector round reads every family's new buckets: under a second normally, minutes when catching up.
_ROUND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(slots=True)
class CollectorSnapshot:
    """One collector's counts since it started; what a collector process leaves for `/metrics` as JSON.

    Items are what clients send: spans, log records, metric data points, StatsD lines, flow records.
    """

    accepted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))  # acknowledged
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))  # invalid, not stored
    # signal -> reason (REJECTION_REASONS) -> whole requests refused for good: their items cannot be counted.
    rejected_requests: dict[str, dict[str, int]] = field(
        default_factory=lambda: {signal: dict.fromkeys(REJECTION_REASONS, 0) for signal in SIGNALS}
    )
    # OTLP requests refused for a missing, unknown or under-scoped token (401/403), when auth is on.
    unauthorized_requests: dict[str, int] = field(default_factory=dict)
    # signal -> reason (REFUSAL_REASONS) -> items refused with "retry later"; a retried item counts again.
    refused: dict[str, dict[str, int]] = field(
        default_factory=lambda: {signal: dict.fromkeys(REFUSAL_REASONS, 0) for signal in SIGNALS}
    )
    # Items lost for good: StatsD and NetFlow rows refused for longer than their senders' buffer lasts
    # (UDP senders cannot retry, so the receiver holds refused rows up to a bound).
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    # Retried requests recognised as already stored: answered again, not stored twice.
    deduplicated_requests: int = 0
    wal_rows: dict[str, int] = field(default_factory=dict)  # table -> rows appended to the log
    wal_bytes: int = 0  # bytes appended to the log
    queued_rows: int = 0  # rows waiting in the batcher for the log, now

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CollectorSnapshot:
        """The snapshot in `text`; counts a newer or older Vigil wrote under other keys are ignored."""
        data = json.loads(text)
        snapshot = cls()
        for name in ("accepted", "rejected", "unauthorized_requests", "dropped"):
            getattr(snapshot, name).update({str(k): int(v) for k, v in data.get(name, {}).items()})
        for signal, reasons in data.get("refused", {}).items():
            snapshot.refused.setdefault(str(signal), {}).update({str(k): int(v) for k, v in reasons.items()})
        for signal, reasons in data.get("rejected_requests", {}).items():
            if isinstance(reasons, int):  # written by a Vigil that counted undecodable requests only
                reasons = {"undecodable": reasons}
            snapshot.rejected_requests.setdefault(str(signal), {}).update({str(k): int(v) for k, v in reasons.items()})
        snapshot.deduplicated_requests = int(data.get("deduplicated_requests", 0))
        snapshot.wal_rows = {str(k): int(v) for k, v in data.get("wal_rows", {}).items()}
        snapshot.wal_bytes = int(data.get("wal_bytes", 0))
        snapshot.queued_rows = int(data.get("queued_rows", 0))
        return snapshot


def write_snapshot(path: Path, snapshot: CollectorSnapshot) -> None:
    """Replace `path` with `snapshot` atomically, so a reader never sees half a file."""
    partial = path.with_name(path.name + ".new")
    partial.write_text(snapshot.to_json())
    os.replace(partial, path)


def read_snapshot(path: Path) -> CollectorSnapshot | None:
    """The snapshot at `path`, or None when there is none (yet) or it cannot be read."""
    try:
        return CollectorSnapshot.from_json(path.read_text())
    except (OSError, ValueError, TypeError, AttributeError):
        return None


class PipelineCounts:
    """A collector's running counts, safe to update from its event loop and its threads.

    >>> counts = PipelineCounts()
    >>> counts.accept("logs", 5); counts.refuse("logs", "backpressure", 2); counts.appended("logs", 5, 900)
    >>> snapshot = counts.snapshot(queued_rows=7)
    >>> snapshot.accepted["logs"], snapshot.refused["logs"]["backpressure"], snapshot.wal_rows, snapshot.queued_rows
    (5, 2, {'logs': 5}, 7)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = CollectorSnapshot()

    def accept(self, signal: str, items: int) -> None:
        with self._lock:
            self._counts.accepted[signal] = self._counts.accepted.get(signal, 0) + items

    def reject(self, signal: str, items: int) -> None:
        with self._lock:
            self._counts.rejected[signal] = self._counts.rejected.get(signal, 0) + items

    def reject_request(self, signal: str, reason: str) -> None:
        with self._lock:
            reasons = self._counts.rejected_requests.setdefault(signal, dict.fromkeys(REJECTION_REASONS, 0))
            reasons[reason] = reasons.get(reason, 0) + 1

    def unauthorized(self, signal: str) -> None:
        with self._lock:
            self._counts.unauthorized_requests[signal] = self._counts.unauthorized_requests.get(signal, 0) + 1

    def refuse(self, signal: str, reason: str, items: int) -> None:
        with self._lock:
            reasons = self._counts.refused.setdefault(signal, dict.fromkeys(REFUSAL_REASONS, 0))
            reasons[reason] = reasons.get(reason, 0) + items

    def drop(self, signal: str, items: int) -> None:
        with self._lock:
            self._counts.dropped[signal] = self._counts.dropped.get(signal, 0) + items

    def appended(self, table: str, rows: int, size: int) -> None:
        """`rows` of `table` written to the log as a segment of `size` bytes."""
        with self._lock:
            self._counts.wal_rows[table] = self._counts.wal_rows.get(table, 0) + rows
            self._counts.wal_bytes += size

    def snapshot(self, *, queued_rows: int = 0) -> CollectorSnapshot:
        """A copy of the counts, with the batcher's current depth."""
        with self._lock:
            copy = CollectorSnapshot.from_json(self._counts.to_json())
        copy.queued_rows = queued_rows
        return copy


class CollectorFamilies:
    """The collectors' counts as Prometheus families, one ``collector`` label per collector, read at scrape time.

    `source` returns each collector's latest snapshot by name (``collector-0`` ...): read live from
    a collector in this process, or from the files collector processes leave.
    """

    def __init__(self, source: Callable[[], Mapping[str, CollectorSnapshot]]) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        snapshots = sorted(self.source().items())
        accepted = CounterMetricFamily(
            "vigil_receiver_accepted_items",
            "Items acknowledged to clients (durable in the write-ahead log): spans, log records, metric data "
            "points, StatsD lines, flow records",
            labels=["collector", "signal"],
        )
        rejected = CounterMetricFamily(
            "vigil_receiver_rejected_items",
            "Invalid items refused and not stored (OTLP partial success, bad StatsD lines, malformed flow sets)",
            labels=["collector", "signal"],
        )
        rejected_requests = CounterMetricFamily(
            "vigil_receiver_rejected_requests",
            "Whole requests refused for good: undecodable (HTTP 400 / INVALID_ARGUMENT), too_large (413), "
            "unsupported media type or content encoding (415)",
            labels=["collector", "signal", "reason"],
        )
        unauthorized = CounterMetricFamily(
            "vigil_receiver_unauthorized_requests",
            "OTLP requests refused for a missing, unknown or under-scoped token (HTTP 401/403, "
            "UNAUTHENTICATED/PERMISSION_DENIED)",
            labels=["collector", "signal"],
        )
        refused = CounterMetricFamily(
            "vigil_receiver_refused_items",
            "Items refused with retry-later: backpressure (429 / RESOURCE_EXHAUSTED), unavailable (503 / "
            "UNAVAILABLE: ClickHouse down and the log full), error (500); each retry counts again",
            labels=["collector", "signal", "reason"],
        )
        dropped = CounterMetricFamily(
            "vigil_receiver_dropped_items",
            "StatsD and NetFlow rows lost after being refused for longer than the receiver may hold them",
            labels=["collector", "signal"],
        )
        deduplicated = CounterMetricFamily(
            "vigil_receiver_deduplicated_requests",
            "OTLP requests recognised as retries of requests already stored (answered, not stored again)",
            labels=["collector"],
        )
        wal_rows = CounterMetricFamily(
            "vigil_wal_appended_rows",
            "Rows written (spilled) to the write-ahead log, by ClickHouse table",
            labels=["collector", "table"],
        )
        wal_bytes = CounterMetricFamily(
            "vigil_wal_appended_bytes", "Bytes written to the write-ahead log", labels=["collector"]
        )
        queued = GaugeMetricFamily(
            "vigil_batcher_queued_rows",
            "Rows received and waiting in memory for the write-ahead log (429 past VIGIL_MAX_QUEUE_ROWS)",
            labels=["collector"],
        )
        for name, snapshot in snapshots:
            for signal in sorted(snapshot.accepted):
                accepted.add_metric([name, signal], snapshot.accepted[signal])
            for signal in sorted(snapshot.rejected):
                rejected.add_metric([name, signal], snapshot.rejected[signal])
            for signal, reasons in sorted(snapshot.rejected_requests.items()):
                for reason in sorted(reasons):
                    rejected_requests.add_metric([name, signal, reason], reasons[reason])
            for signal in sorted(snapshot.unauthorized_requests):
                unauthorized.add_metric([name, signal], snapshot.unauthorized_requests[signal])
            for signal, reasons in sorted(snapshot.refused.items()):
                for reason in sorted(reasons):
                    refused.add_metric([name, signal, reason], reasons[reason])
            for signal in sorted(snapshot.dropped):
                dropped.add_metric([name, signal], snapshot.dropped[signal])
            deduplicated.add_metric([name], snapshot.deduplicated_requests)
            for table in sorted(snapshot.wal_rows):
                wal_rows.add_metric([name, table], snapshot.wal_rows[table])
            wal_bytes.add_metric([name], snapshot.wal_bytes)
            queued.add_metric([name], snapshot.queued_rows)
        return [
            accepted,
            rejected,
            rejected_requests,
            unauthorized,
            refused,
            dropped,
            deduplicated,
            wal_rows,
            wal_bytes,
            queued,
        ]


@dataclass(frozen=True, slots=True)
class WalBacklog:
    """What the write-ahead logs hold that ClickHouse does not have yet."""

    segments: int
    bytes: int
    oldest: float | None  # unix seconds the oldest pending segment was written (acknowledged); None: empty
    limit_bytes: int  # VIGIL_MAX_WAL_BYTES

    def lag(self, now: float) -> float:
        """Ingest lag: how long the oldest acknowledged row has waited for ClickHouse (0 when none waits)."""
        return 0.0 if self.oldest is None else max(now - self.oldest, 0.0)


class WalFamilies:
    """The write-ahead log's backlog (the spill queue), read from disk at scrape time."""

    def __init__(self, source: Callable[[], WalBacklog], *, clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self.clock = clock

    def collect(self) -> Iterable[Metric]:
        backlog = self.source()
        return [
            GaugeMetricFamily(
                "vigil_wal_pending_bytes",
                "Bytes in the write-ahead logs not yet inserted into ClickHouse",
                value=backlog.bytes,
            ),
            GaugeMetricFamily(
                "vigil_wal_pending_segments",
                "Segments in the write-ahead logs not yet inserted into ClickHouse",
                value=backlog.segments,
            ),
            GaugeMetricFamily(
                "vigil_wal_oldest_pending_age_seconds",
                "Ingest lag: age of the oldest acknowledged data not yet in ClickHouse (0 when none waits)",
                value=backlog.lag(self.clock()),
            ),
            GaugeMetricFamily(
                "vigil_wal_limit_bytes",
                "VIGIL_MAX_WAL_BYTES: past it receivers refuse (429, or 503 while ClickHouse is unavailable)",
                value=backlog.limit_bytes,
            ),
        ]


class InserterMetrics:
    """What the inserter records: rows per table, each insert's duration, failures, store availability."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.inserted_rows = Counter(
            "vigil_inserter_inserted_rows",
            "Rows moved from the write-ahead log into ClickHouse, by table",
            ["table"],
            registry=registry,
        )
        self.insert_duration = Histogram(
            "vigil_inserter_insert_duration_seconds",
            "Duration of each successful ClickHouse insert of write-ahead log segments, by table",
            ["table"],
            buckets=_INSERT_BUCKETS,
            registry=registry,
        )
        self.failures = Counter(
            "vigil_inserter_failures",
            "Failed inserts: unavailable (ClickHouse down; retried), quarantined (segments set aside), "
            "error (unexpected; retried)",
            ["reason"],
            registry=registry,
        )
        for reason in ("unavailable", "quarantined", "error"):
            self.failures.labels(reason)
        self.store_unavailable = Gauge(
            "vigil_store_unavailable",
            "1 while inserts into ClickHouse fail and the write-ahead log holds the rows (the spill queue), else 0",
            registry=registry,
        )

    def inserted(self, table: str, rows: int, seconds: float) -> None:
        self.inserted_rows.labels(table).inc(rows)
        self.insert_duration.labels(table).observe(seconds)

    def failed(self, reason: str) -> None:
        self.failures.labels(reason).inc()


class DetectorMetrics:
    """What the detector engine records: each family's newest judged bucket, round durations, failures.

    Lag is computed when scraped (now minus the end of the newest bucket judged), so a stalled
    engine shows a growing lag rather than the value of its last round.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._judged: dict[str, float] = {}
        self.round_duration = Histogram(
            "vigil_detector_round_duration_seconds",
            "Duration of each detector round (every family, canary verdicts, the service-edge rollup)",
            buckets=_ROUND_BUCKETS,
            registry=registry,
        )
        self.failures = Counter(
            "vigil_detector_failures",
            "Detector families whose round failed (retried next round, from the same watermark)",
            ["detector"],
            registry=registry,
        )
        self.leader = Gauge(
            "vigil_detector_leader",
            "1 while this process runs the detectors and alerts (the lease holder, or vigil serve), 0 on a standby",
            registry=registry,
        )
        if registry is not None:
            registry.register(self)

    def judged(self, detector: str, watermark: float) -> None:
        """`detector` has judged every bucket ending at or before `watermark` (unix seconds)."""
        with self._lock:
            self._judged[detector] = watermark

    def forget(self) -> None:
        """This process stopped detecting (shut down, or another replica leads): no lag to report."""
        with self._lock:
            self._judged.clear()

    def collect(self) -> Iterable[Metric]:
        lag = GaugeMetricFamily(
            "vigil_detector_lag_seconds",
            "Seconds between now and the end of the newest bucket each detector family has judged",
            labels=["detector"],
        )
        now = self.clock()
        with self._lock:
            judged = sorted(self._judged.items())
        for detector, watermark in judged:
            lag.add_metric([detector], max(now - watermark, 0.0))
        return [lag]


class AlertMetrics:
    """What the alert loop records after each round: the Slack outbox's undelivered notifications."""

    def __init__(self, registry: CollectorRegistry | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: tuple[int, float | None] | None = None
        if registry is not None:
            registry.register(self)

    def outbox(self, pending: int, oldest: float | None) -> None:
        """`pending` notifications not yet accepted by Slack, the oldest queued at `oldest` (unix seconds)."""
        with self._lock:
            self._pending = (pending, oldest)

    def forget(self) -> None:
        with self._lock:
            self._pending = None

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            pending = self._pending
        if pending is None:  # alerts do not run here (or have not finished a round yet)
            return []
        count, oldest = pending
        return [
            GaugeMetricFamily(
                "vigil_alert_outbox_pending_notifications",
                "Notifications queued for Slack and not yet delivered (all of them when Slack is not configured)",
                value=count,
            ),
            GaugeMetricFamily(
                "vigil_alert_outbox_oldest_pending_age_seconds",
                "Age of the oldest undelivered notification (0 when none waits)",
                value=0.0 if oldest is None else max(self.clock() - oldest, 0.0),
            ),
        ]


class RequestMetrics:
    """HTTP requests served on VIGIL_HTTP_PORT (API, pages, probes, /metrics), by route template."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.duration = Histogram(
            "vigil_http_request_duration_seconds",
            "Time to answer each HTTP request on the API and dashboard port, by route template (the path "
            f"with its parameters, e.g. /services/{{name}}; '{UNMATCHED_ROUTE}' for 404s), method and status",
            ["route", "method", "status"],
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.duration.labels(route, method, str(status)).observe(seconds)


class MeasureRequests:
    """ASGI middleware timing each HTTP request into `metrics`, from its start to the end of its body."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before it starts a response

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route = route_template(scope) or UNMATCHED_ROUTE
            self.metrics.observe(route, scope["method"], status, time.perf_counter() - started)


class SelfMetrics:
    """One Vigil's registry: what ``GET /metrics`` serves, plus this process's CPU, memory and file descriptors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = RequestMetrics(self.registry)

    def register(self, collector: Collector) -> None:
        self.registry.register(collector)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
