"""StatsD aggregation: lines in, one row per series per flush interval out, in Vigil's metric tables.

What each type becomes (one row per series and interval [previous flush, this flush]):

- ``c`` counter -> ``metrics_sum``: Value = the sum of value/rate, AggregationTemporality 1 (delta),
  IsMonotonic unless a negative increment was seen. Etsy's per-second rate is not stored: it is
  Value / (TimeUnix - StartTimeUnix), computed at query time.
- ``g`` gauge -> ``metrics_gauge`` with the last value. ``+N``/``-N`` change the current value, which
  persists across flushes (a delta with no value before starts from 0, as in Etsy). A gauge is only
  written in intervals where it was updated (Etsy re-sends idle gauges; a stored series does not need
  that). A gauge idle for an hour is forgotten, so names that stop arriving do not hold memory forever.
- ``ms`` timer, ``h`` histogram, ``d`` distribution -> ``metrics_summary``: Count = the sum of 1/rate,
  Sum = the sum of value/rate (population estimates, so Sum/Count is the mean; Etsy's ``sum`` is the
  unscaled sum of the values received, and equals ours only without sample rates). ValueAtQuantiles
  holds 0.0 -> min, p/100 -> Etsy's ``upper_p`` for each configured percentile (nearest rank over the
  values received, unweighted: n = round_half_up(p/100 * len), value = sorted[n-1]; one value gives it
  for every percentile; n = 0 omits that percentile), and 1.0 -> max. The 0.5 quantile is this
  nearest-rank median, which equals Etsy's ``median`` for an odd number of values; for an even number
  Etsy averages the two middle values instead. Count is rounded to a whole number (a UInt64 column).
  Etsy treats ``h`` and ``d`` as counters; we follow DogStatsD and summarise them like timers.
- ``s`` set -> ``metrics_gauge``: Value = the number of distinct members in the interval.
- Events and service checks -> rows of ``logs`` at the next flush.

Every row's ServiceName is the ``service`` tag (removed from the attributes), else the first
`StatsdConfig.service_segments` dot-separated segments of the name, else `StatsdConfig.default_service`;
ServiceVersion is the ``version`` tag (also removed). Unlike Etsy, which folds tags into the key in
the order sent, a series is its name, type and *set* of tags: ``#a:1,b:2`` and ``#b:2,a:1`` are one
series (when a key repeats, its last value wins). ``|T`` timestamps and ``|c:`` container ids are
accepted and ignored: every point belongs to the interval it arrived in.

The hot path works on bytes: per-interval state is keyed by the line without its value
(`statsd_parse.fast_key`), so a line of a series already seen in this interval costs a dict lookup
and a ``float()``; a full parse happens once per distinct key and interval. Text is decoded once per
series, and rows are built only at flush.

>>> agg = StatsdAggregator(StatsdConfig(), start=0.0)
>>> agg.ingest(b"hits:1|c\\nhits:4|c|@0.5\\nlat:10|ms\\nlat:30|ms\\nbad:x|c")
LineCounts(good=4, bad=1)
>>> {b.table: b.rows.column("MetricName").to_pylist() for b in agg.flush(10.0)}
{'metrics_sum': ['hits'], 'metrics_summary': ['lat']}
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from vigil.collector.statsd_parse import (
    BadLine,
    EventLine,
    MetricLine,
    ServiceCheckLine,
    fast_key,
    is_delta,
    parse_line,
)
from vigil.errors import ConfigError
from vigil.store.schema import LOGS_ARROW_SCHEMA, METRIC_ARROW_SCHEMAS
from vigil.types import RowBatch

__all__ = [
    "SCOPE_NAME",
    "LineCounts",
    "StatsdAggregator",
    "StatsdConfig",
    "StatsdStats",
    "etsy_rank",
    "warm_up",
]

logger = logging.getLogger(__name__)

SCOPE_NAME = "vigil.statsd"

# Bad lines are logged at most once per this many seconds, with the count since the last report.
BAD_LINE_LOG_INTERVAL_S = 10.0
# A gauge not updated for this long is forgotten (its next delta starts from 0 again).
GAUGE_IDLE_TTL_S = 3600.0
_GAUGE_SWEEP_INTERVAL_S = 60.0
# Cached per-key parse results and series identities; cleared at a flush when over this size.
_MAX_CACHED_KEYS = 200_000
# Events and service checks held for one flush; more are refused as bad lines.
MAX_PENDING_LOGS = 100_000

_K_COUNTER, _K_TIMER, _K_MS, _K_GAUGE, _K_SET = range(5)
_KINDS = {b"c": _K_COUNTER, b"ms": _K_MS, b"h": _K_TIMER, b"d": _K_TIMER, b"g": _K_GAUGE, b"s": _K_SET}
_TABLES = {
    _K_COUNTER: "metrics_sum",
    _K_TIMER: "metrics_summary",
    _K_MS: "metrics_summary",
    _K_GAUGE: "metrics_gauge",
    _K_SET: "metrics_gauge",
}
_ALERT_SEVERITY = {"error": ("ERROR", 17), "warning": ("WARN", 13), "info": ("INFO", 9), "success": ("INFO", 9)}
_CHECK_SEVERITY = {0: ("INFO", 9), 1: ("WARN", 13), 2: ("ERROR", 17), 3: ("WARN", 13)}
_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class StatsdConfig:
    """How StatsD lines are aggregated; `percentiles` are Etsy's ``percentThreshold`` (0 < p < 100)."""

    flush_interval: float = 10.0
    percentiles: tuple[float, ...] = (50, 90, 95, 99)
    service_segments: int = 0
    default_service: str = "statsd"

    def validate(self) -> None:
        if not self.flush_interval > 0:
            raise ConfigError(f"StatsD flush_interval must be a positive number of seconds, got {self.flush_interval}")
        for p in self.percentiles:
            if not 0 < p < 100:
                raise ConfigError(
                    f"StatsD percentiles must be between 0 and 100 (exclusive; min and max are always kept), got {p}"
                )
        if self.service_segments < 0:
            raise ConfigError(f"StatsD service_segments must be 0 or more, got {self.service_segments}")
        if not self.default_service:
            raise ConfigError("StatsD default_service must not be empty")


class LineCounts(NamedTuple):
    """What `StatsdAggregator.ingest` made of a packet: lines taken and lines refused (blank lines are neither)."""

    good: int
    bad: int


@dataclass(slots=True)
class StatsdStats:
    """Running counts since the aggregator started; `last_bad_line` quotes the latest refused line and why."""

    packets: int = 0
    lines: int = 0
    bad_lines: int = 0
    last_bad_line: str = ""


class _Series:
    """One series' identity, decoded once; gauges also hold their persistent value."""

    __slots__ = ("attributes", "gauge", "kind", "name", "resource", "service", "unit", "version")

    def __init__(self, kind: int, name: str, attributes: list[tuple[str, str]], service: str, version: str) -> None:
        self.kind = kind
        self.name = name
        self.unit = "ms" if kind == _K_MS else ""
        self.attributes = attributes
        self.service = service
        self.version = version
        self.resource = [("service.name", service)] + ([("service.version", version)] if version else [])
        # [value, wall time of its last flush]; shared with StatsdAggregator._gauge_values.
        self.gauge: list[float] = []


def etsy_rank(count: int, pct: float) -> int:
    """Etsy statsd's rank for ``upper_<pct>`` among `count` sorted values (1-based; 0: not reported).

    Same arithmetic as Etsy's JavaScript, ``Math.round(pct / 100 * count)`` with halves up, and
    one value is every percentile.

    >>> etsy_rank(4, 50), etsy_rank(5, 90), etsy_rank(1, 1), etsy_rank(2, 10)
    (2, 5, 1, 0)
    """
    if count == 1:
        return 1
    exact = pct / 100 * count
    rank = math.floor(exact)
    return rank + 1 if exact - rank >= 0.5 else rank


def warm_up() -> None:
    """Aggregate and flush one line of every kind, and drop the rows.

    The first flush in a process takes ~0.3 s (pyarrow imports pandas on its first time-zone-aware
    timestamp); a receiver does that before it listens, not while a socket buffer fills.
    """
    agg = StatsdAggregator(StatsdConfig(), start=0.0)
    agg.ingest(b"c:1|c\ng:1|g\ns:1|s\nt:1|ms\n_sc|x|0", now=0.0)
    agg.flush(1.0)


def _empty_lists(n: int, item: pa.DataType) -> pa.Array:
    return pa.array([[] for _ in range(n)], pa.list_(item))


class StatsdAggregator:
    """Aggregates StatsD/DogStatsD packets per series; `flush` returns one interval's rows. Thread-safe."""

    def __init__(
        self,
        config: StatsdConfig | None = None,
        *,
        start: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`start` opens the first interval (default: now); `clock` paces the bad-line log."""
        self.config = config or StatsdConfig()
        self._clock = clock
        self.config.validate()
        # (percentile, quantile) pairs; rounded so that 99.9 is stored as 0.999, not 0.9990000000000001.
        self._percentiles = [(p, round(p / 100, 12)) for p in sorted(set(self.config.percentiles))]
        self._lock = threading.Lock()
        # Per interval, swapped by flush: fast key -> [kind, accumulator, negative seen, 1/rate, series].
        self._aliases: dict[bytes, list[Any]] = {}
        self._updated_gauges: list[_Series] = []
        self._logs: list[tuple[int, EventLine | ServiceCheckLine]] = []
        self._interval_start = time.time() if start is None else start
        # Across intervals: fast key -> (kind, 1/rate, series); series key -> series; gauge values.
        self._templates: dict[bytes, tuple[int, float, _Series]] = {}
        self._series: dict[tuple[Any, ...], _Series] = {}
        self._gauge_values: dict[tuple[Any, ...], list[float]] = {}
        self._last_sweep = self._interval_start
        self._stats = StatsdStats()
        self._bad_since_log = 0
        self._next_log_at = 0.0

    def stats(self) -> StatsdStats:
        with self._lock:
            return StatsdStats(self._stats.packets, self._stats.lines, self._stats.bad_lines, self._stats.last_bad_line)

    def ingest(self, packet: bytes, now: float | None = None) -> LineCounts:
        """Aggregate every line of `packet` (a datagram, or whole lines from a stream). Never raises.

        `now` is the receive time given to events and service checks without their own (default: the clock).
        """
        good = bad = 0
        with self._lock:
            get = self._aliases.get
            for line in packet.split(b"\n"):
                # The fast path: the same series (name, type, rate and tags, byte for byte) was seen this
                # interval, so only the value is new. Anything unusual falls through to a full parse.
                colon = line.find(b":")
                if colon > 0:
                    bar = line.find(b"|", colon)
                    if bar > 0:
                        entry = get(line[:colon] + line[bar:])
                        if entry is not None:
                            kind = entry[0]
                            raw = line[colon + 1 : bar]
                            if kind == _K_SET:
                                entry[1].add(raw)
                                good += 1
                                continue
                            try:
                                value = float(raw)
                            except ValueError:
                                value = math.nan
                            # value - value is 0 only for finite values; timers must not be negative.
                            if value - value == 0.0 and (value >= 0.0 or kind != _K_MS):
                                if kind == _K_COUNTER:
                                    entry[1] += value
                                    if value < 0.0:
                                        entry[2] = True
                                elif kind == _K_GAUGE:
                                    held = entry[1]
                                    if raw[0] in (43, 45):  # '+' or '-': a delta
                                        held[0] += value
                                    else:
                                        held[0] = value
                                else:
                                    entry[1].append(value)
                                good += 1
                                continue
                outcome = self._slow_path(line, now)
                if outcome > 0:
                    good += 1
                elif outcome == 0:
                    bad += 1
            self._stats.packets += 1
            self._stats.lines += good + bad
        if bad and self._clock() >= self._next_log_at:
            self._log_bad_lines()
        return LineCounts(good, bad)

    def reject(self, line: bytes, reason: str) -> None:
        """Count a line refused before it reached `ingest` (e.g. over a stream's line-length limit)."""
        with self._lock:
            self._stats.lines += 1
            self._note_bad(BadLine(line, reason))
        if self._clock() >= self._next_log_at:
            self._log_bad_lines()

    def _note_bad(self, bad: BadLine) -> None:
        self._stats.bad_lines += 1
        self._stats.last_bad_line = bad.message
        self._bad_since_log += 1

    def _log_bad_lines(self) -> None:
        with self._lock:
            count, self._bad_since_log = self._bad_since_log, 0
            latest = self._stats.last_bad_line
            self._next_log_at = self._clock() + BAD_LINE_LOG_INTERVAL_S
        if count:
            logger.warning("dropped %d bad StatsD line(s) since the last report; the latest: %s", count, latest)

    def _slow_path(self, line: bytes, now: float | None) -> int:
        """A full parse of one line: 1 taken, 0 refused, -1 blank. Called with the lock held."""
        try:
            parsed = parse_line(line)
            if parsed is None:
                return -1
            if isinstance(parsed, MetricLine):
                self._add_metric(line, parsed)
                return 1
            if isinstance(parsed, BadLine):
                self._note_bad(parsed)
                return 0
            if len(self._logs) >= MAX_PENDING_LOGS:
                self._note_bad(
                    BadLine(line, f"more than {MAX_PENDING_LOGS} events and service checks in one flush interval")
                )
                return 0
            self._logs.append((time.time_ns() if now is None else int(now * _NS), parsed))
            return 1
        except Exception as exc:  # a bug must cost one line, never the receiver
            logger.exception("StatsD line could not be aggregated: %r", line[:200])
            self._note_bad(BadLine(line, f"internal error ({type(exc).__name__})"))
            return 0

    def _add_metric(self, line: bytes, parsed: MetricLine) -> None:
        # A valid metric line always has a fast key; the fallback only keeps this total.
        key = fast_key(line) or b"\x00" + line
        entry = self._aliases.get(key)
        if entry is None:
            template = self._templates.get(key)
            if template is None:
                kind = _KINDS[parsed.type]
                template = (kind, 1.0 / parsed.rate, self._series_for(kind, parsed))
                self._templates[key] = template
            kind, inverse_rate, series = template
            if kind == _K_COUNTER:
                entry = [kind, 0.0, False, inverse_rate, series]
            elif kind == _K_GAUGE:
                entry = [kind, series.gauge, False, 1.0, series]
                self._updated_gauges.append(series)
            elif kind == _K_SET:
                entry = [kind, set(), False, 1.0, series]
            else:
                entry = [kind, [], False, inverse_rate, series]
            self._aliases[key] = entry
        kind = entry[0]
        if kind == _K_COUNTER:
            for value in parsed.values:
                entry[1] += value
                if value < 0.0:
                    entry[2] = True
        elif kind == _K_GAUGE:
            held = entry[1]
            for raw, value in zip(parsed.raw_values, parsed.values, strict=True):
                held[0] = held[0] + value if is_delta(raw) else value
        elif kind == _K_SET:
            entry[1].add(parsed.raw_values[0])
        else:
            entry[1].extend(parsed.values)

    def _service(self, name: str, tagged: str | None) -> str:
        if tagged:
            return tagged
        segments = self.config.service_segments
        if segments > 0 and name:
            return ".".join(name.split(".")[:segments]) or self.config.default_service
        return self.config.default_service

    def _series_for(self, kind: int, parsed: MetricLine) -> _Series:
        name = parsed.name.decode()
        tags: dict[str, str] = {}
        for key, value in parsed.tags:
            tags[key.decode()] = value.decode()
        service = self._service(name, tags.pop("service", None))
        version = tags.pop("version", "")
        attributes = sorted(tags.items())
        identity = (parsed.type, name, tuple(attributes), service, version)
        series = self._series.get(identity)
        if series is None:
            series = _Series(kind, name, attributes, service, version)
            if kind == _K_GAUGE:
                series.gauge = self._gauge_values.setdefault(identity, [0.0, self._interval_start])
            self._series[identity] = series
        return series

    def flush(self, now: float | None = None) -> list[RowBatch]:
        """Rows for the interval since the previous flush (or construction) up to `now`; resets it.

        One `RowBatch` per table that has rows: ``metrics_sum``, ``metrics_gauge``, ``metrics_summary``, ``logs``.
        """
        end = time.time() if now is None else now
        with self._lock:
            aliases, self._aliases = self._aliases, {}
            updated, self._updated_gauges = self._updated_gauges, []
            logs, self._logs = self._logs, []
            start, self._interval_start = min(self._interval_start, end), end
            gauges = []
            for series in dict.fromkeys(updated):
                gauges.append((series, series.gauge[0]))
                series.gauge[1] = end
            self._tidy_caches(end)
        return self._rows(aliases.values(), gauges, logs, start, end)

    def _tidy_caches(self, now: float) -> None:
        """Forget idle gauges and oversized caches; at a flush, so every interval uses one series object per key."""
        forget = len(self._templates) > _MAX_CACHED_KEYS
        if now - self._last_sweep >= _GAUGE_SWEEP_INTERVAL_S:
            self._last_sweep = now
            idle = [key for key, held in self._gauge_values.items() if now - held[1] > GAUGE_IDLE_TTL_S]
            for key in idle:
                del self._gauge_values[key]
            forget = forget or bool(idle)
        if forget:
            self._templates.clear()
            self._series.clear()

    def _rows(
        self,
        entries: Iterable[list[Any]],
        gauges: list[tuple[_Series, float]],
        logs: list[tuple[int, EventLine | ServiceCheckLine]],
        start: float,
        end: float,
    ) -> list[RowBatch]:
        counters: dict[_Series, list[Any]] = {}
        summaries: dict[_Series, list[tuple[list[float], float]]] = {}
        sets: dict[_Series, set[bytes]] = {}
        for kind, acc, negative, inverse_rate, series in entries:
            if kind == _K_COUNTER:
                total = counters.get(series)
                if total is None:
                    counters[series] = [acc * inverse_rate, negative]
                else:
                    total[0] += acc * inverse_rate
                    total[1] = total[1] or negative
            elif kind == _K_SET:
                sets.setdefault(series, set()).update(acc)
            elif kind != _K_GAUGE:
                summaries.setdefault(series, []).append((acc, inverse_rate))
        start_ns, end_ns = int(start * _NS), int(end * _NS)
        batches: list[RowBatch] = []
        if counters:
            columns = self._identity(list(counters), start_ns, end_ns)
            columns["Value"] = pa.array([total for total, _ in counters.values()], pa.float64())
            columns["AggregationTemporality"] = pa.array([1] * len(counters), pa.int32())
            columns["IsMonotonic"] = pa.array([not negative for _, negative in counters.values()], pa.bool_())
            batches.append(self._batch("metrics_sum", columns))
        points = [*gauges, *((series, float(len(members))) for series, members in sets.items())]
        if points:
            columns = self._identity([series for series, _ in points], start_ns, end_ns)
            columns["Value"] = pa.array([value for _, value in points], pa.float64())
            batches.append(self._batch("metrics_gauge", columns))
        if summaries:
            batches.append(self._summary_batch(summaries, start_ns, end_ns))
        if logs:
            batches.append(self._log_batch(logs))
        return batches

    def _summary_batch(
        self, summaries: dict[_Series, list[tuple[list[float], float]]], start_ns: int, end_ns: int
    ) -> RowBatch:
        """Count, Sum and quantiles per series, from its values in parts (one per sample rate seen)."""
        counts: list[int] = []
        sums: list[float] = []
        quantiles: list[list[float]] = []
        values: list[list[float]] = []
        for parts in summaries.values():
            # Sorting and summing in Arrow, which lets go of the GIL: the event loop keeps reading
            # datagrams while a flush orders millions of timer values.
            arrays = [(pa.array(part, pa.float64()), inverse_rate) for part, inverse_rate in parts]
            count = sum(len(array) * inverse_rate for array, inverse_rate in arrays)
            total = sum(pc.sum(array).as_py() * inverse_rate for array, inverse_rate in arrays)
            received = arrays[0][0] if len(arrays) == 1 else pa.concat_arrays([array for array, _ in arrays])
            n = len(received)
            picks = [(0.0, 0)]
            for pct, q in self._percentiles:
                rank = etsy_rank(n, pct)
                if rank:
                    picks.append((q, rank - 1))
            picks.append((1.0, n - 1))
            ordered = received.take(pc.sort_indices(received))
            counts.append(math.floor(count + 0.5))
            sums.append(total)
            quantiles.append([q for q, _ in picks])
            values.append(ordered.take(pa.array([i for _, i in picks], pa.int64())).to_pylist())
        columns = self._identity(list(summaries), start_ns, end_ns)
        columns["Count"] = pa.array(counts, pa.uint64())
        columns["Sum"] = pa.array(sums, pa.float64())
        columns["ValueAtQuantiles.Quantile"] = pa.array(quantiles, pa.list_(pa.float64()))
        columns["ValueAtQuantiles.Value"] = pa.array(values, pa.list_(pa.float64()))
        columns["AggregationTemporality"] = pa.array([1] * len(summaries), pa.int32())
        return self._batch("metrics_summary", columns)

    def _identity(self, series: list[_Series], start_ns: int, end_ns: int) -> dict[str, pa.Array]:
        n = len(series)
        attr_map = pa.map_(pa.string(), pa.string())
        ts = pa.timestamp("ns", tz="UTC")
        no_maps = pa.array([[] for _ in range(n)], attr_map)
        return {
            "ServiceName": pa.array([s.service for s in series], pa.string()),
            "ServiceVersion": pa.array([s.version for s in series], pa.string()),
            "ResourceAttributes": pa.array([s.resource for s in series], attr_map),
            "ResourceAttributeTypes": no_maps,
            "ScopeName": pa.array([SCOPE_NAME] * n, pa.string()),
            "ScopeVersion": pa.array([""] * n, pa.string()),
            "MetricName": pa.array([s.name for s in series], pa.string()),
            "MetricDescription": pa.array([""] * n, pa.string()),
            "MetricUnit": pa.array([s.unit for s in series], pa.string()),
            "Attributes": pa.array([s.attributes for s in series], attr_map),
            "AttributeTypes": no_maps,
            "StartTimeUnix": pa.array([start_ns] * n, ts),
            "TimeUnix": pa.array([end_ns] * n, ts),
            "Flags": pa.array([0] * n, pa.uint32()),
        }

    @staticmethod
    def _batch(table: str, columns: dict[str, pa.Array]) -> RowBatch:
        schema = METRIC_ARROW_SCHEMAS[table]
        n = len(columns["MetricName"])
        for name in schema.names:
            if name.startswith("Exemplars."):
                columns[name] = _empty_lists(n, schema.field(name).type.value_type)
        return RowBatch(table, pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema))

    def _log_batch(self, logs: list[tuple[int, EventLine | ServiceCheckLine]]) -> RowBatch:
        rows: dict[str, list[Any]] = {name: [] for name in LOGS_ARROW_SCHEMA.names}
        for received_ns, item in logs:
            tags = dict(item.tags)
            if isinstance(item, EventLine):
                service = tags.pop("service", "") or self.config.default_service
                severity_text, severity_number = _ALERT_SEVERITY[item.alert_type]
                body, event_name = item.text, item.title
                extra = {
                    "event.alert_type": item.alert_type,
                    "event.aggregation_key": item.aggregation_key,
                    "event.priority": item.priority,
                    "event.source_type": item.source_type,
                }
            else:
                service = self._service(item.name, tags.pop("service", None))
                severity_text, severity_number = _CHECK_SEVERITY[item.status]
                body, event_name = item.message, item.name
                extra = {"check.status": str(item.status)}
            version = tags.pop("version", "")
            if item.hostname:
                extra["host.name"] = item.hostname
            tags.update((key, value) for key, value in extra.items() if value)
            rows["Timestamp"].append(item.timestamp * _NS if item.timestamp is not None else received_ns)
            rows["ObservedTimestamp"].append(received_ns)
            rows["TraceId"].append("")
            rows["SpanId"].append("")
            rows["TraceFlags"].append(0)
            rows["SeverityText"].append(severity_text)
            rows["SeverityNumber"].append(severity_number)
            rows["ServiceName"].append(service)
            rows["ServiceVersion"].append(version)
            rows["Body"].append(body)
            rows["BodyType"].append("")
            rows["EventName"].append(event_name)
            rows["ResourceAttributes"].append(
                [("service.name", service)] + ([("service.version", version)] if version else [])
            )
            rows["ResourceAttributeTypes"].append([])
            rows["ScopeName"].append(SCOPE_NAME)
            rows["ScopeVersion"].append("")
            rows["LogAttributes"].append(sorted(tags.items()))
            rows["LogAttributeTypes"].append([])
        return RowBatch("logs", pa.Table.from_pydict(rows, schema=LOGS_ARROW_SCHEMA))
