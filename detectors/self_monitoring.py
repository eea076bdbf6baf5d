"""Findings on Vigil itself: ingest lag, and items refused, dropped or rejected.

The collector role writes its own samples as metrics of service "vigil" every
VIGIL_SELF_METRICS_INTERVAL (`vigil.collector.self_monitoring.SelfSampler`), through the store
like any signal, so this family works wherever the detectors run, `vigil serve` or a separate
`vigil detect`. Buckets are 10 seconds wide; a series is one metric (and signal and refusal
reason) of one Vigil instance:

- ``vigil.ingest.lag``: the oldest acknowledged data not yet in ClickHouse is older than
  VIGIL_SELF_INGEST_LAG_THRESHOLD. Warning; critical past five times the threshold.
- ``vigil.receiver.refused_items``, reason ``backpressure``: clients are told to slow down
  (429 / RESOURCE_EXHAUSTED). Warning: they retry, but the pipeline is at its limit.
- ``vigil.receiver.refused_items``, reason ``unavailable`` or ``error``: clients are refused because
  ClickHouse is down and the log is full (503), or by a bug (500). Critical.
- ``vigil.receiver.dropped_items``: StatsD or NetFlow rows are lost (their senders cannot retry).
  Critical.
- ``vigil.receiver.rejected_items`` and ``rejected_requests`` (reason ``undecodable``,
  ``too_large`` or ``unsupported``): clients send invalid data. Info: the data is lost, but
  through the client's bug, not Vigil's, and the client was told.

A finding closes once its series has been back at or under its threshold for a minute, so a
flapping pipeline makes one finding, not one per burst.
"""

from __future__ import annotations

import json
import math
import time
from typing import Literal

from clickhouse_connect.driver.client import Client

from vigil.detectors.base import Anomaly, Observation, SeriesDetector, Severity
from vigil.detectors.runner import Buckets, SeriesInfo
from vigil.self_metrics import (
    DROPPED_METRIC,
    INGEST_LAG_METRIC,
    REFUSED_METRIC,
    REJECTED_METRIC,
    REJECTED_REQUESTS_METRIC,
    SELF_SERVICE,
)
from vigil.store.detector_read import gauge_points, sum_points
from vigil.store.findings import Finding

__all__ = ["SelfMonitoring", "ThresholdDetector"]

_COUNTS = (REFUSED_METRIC, DROPPED_METRIC, REJECTED_METRIC, REJECTED_REQUESTS_METRIC)
# A lag this many times the threshold is an outage in the making, not a slow minute.
_CRITICAL_LAG_FACTOR = 5.0
_CLOSE_SECONDS = 60.0
# What one item of each signal is, in a summary.
_ITEMS = {
    "traces": "spans",
    "logs": "log records",
    "metrics": "metric data points",
    "statsd": "StatsD rows",
    "flows": "flow records",
}
_REJECTED_ITEMS = {**_ITEMS, "statsd": "StatsD lines", "flows": "malformed NetFlow/IPFIX packets or sets"}
_REFUSALS = {"backpressure": "429 (slow down)", "unavailable": "503 (store unavailable, log full)"}
_REJECTIONS = {
    "undecodable": "rejected as undecodable (400)",
    "too_large": "rejected as over the size limit (413)",
    "unsupported": "rejected for a media type or content encoding Vigil does not read (415)",
}


def _utc(t: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(t))


class ThresholdDetector:
    """An excursion while observations exceed `threshold`; it ends after `close_seconds` at or under it.

    `aggregate` says what the finding reports: ``max``, the worst value seen (a lag), or ``sum``,
    the total since the onset (items refused). Past `critical_above` (if set) the severity is
    critical. `what` and `unit` word the summary: "{observed} {unit} {what}".

    >>> detector = ThresholdDetector(threshold=60.0, what="of ingest lag", unit="s", critical_above=300.0)
    >>> for t, y in ((0, 1.0), (10, 75.0), (20, 90.0)):
    ...     detector.learn_one({"t": t, "y": y})
    >>> anomaly = detector.anomaly()
    >>> anomaly.onset, anomaly.observed, anomaly.severity
    (10, 90.0, 'warning')
    """

    def __init__(
        self,
        *,
        threshold: float = 0.0,
        severity: Severity = "warning",
        critical_above: float | None = None,
        aggregate: Literal["max", "sum"] = "max",
        close_seconds: float = _CLOSE_SECONDS,
        what: str = "",
        unit: str = "",
    ) -> None:
        self.threshold = threshold
        self.severity = severity
        self.critical_above = critical_above
        self.aggregate = aggregate
        self.close_seconds = close_seconds
        self.what = what
        self.unit = unit
        self._onset: float | None = None
        self._last_over = 0.0
        self._observed = 0.0

    def score_one(self, x: Observation) -> float:
        y = x.get("y")
        return 1.0 if y is not None and y > self.threshold else 0.0

    def learn_one(self, x: Observation) -> None:
        y = x.get("y")
        if y is None:  # no sample in this bucket: nothing learned, an open excursion stays open
            return
        t = x["t"]
        if y > self.threshold:
            if self._onset is None:
                self._onset, self._observed = t, 0.0
            self._last_over = t
            self._observed = self._observed + y if self.aggregate == "sum" else max(self._observed, y)
        elif self._onset is not None and t - self._last_over >= self.close_seconds:
            self._onset = None

    def anomaly(self) -> Anomaly | None:
        if self._onset is None:
            return None
        critical = self.critical_above is not None and self._observed > self.critical_above
        since = f" since {_utc(self._onset)}" if self.aggregate == "sum" else ""
        return Anomaly(
            onset=self._onset,
            baseline=self.threshold,
            observed=self._observed,
            score=1.0,
            severity="critical" if critical else self.severity,
            summary=f"{self._observed:,.0f} {self.unit} {self.what}{since}",
        )

    def __repr__(self) -> str:
        return (
            f"ThresholdDetector(threshold={self.threshold!r}, severity={self.severity!r}, "
            f"critical_above={self.critical_above!r}, aggregate={self.aggregate!r}, "
            f"close_seconds={self.close_seconds!r}, what={self.what!r}, unit={self.unit!r})"
        )


class SelfMonitoring:
    """Vigil's own ingest lag and drops, from the samples its collector role writes; see the module docstring."""

    name = "self_monitoring"
    kind = "self_monitoring"
    step = 10.0

    def __init__(self, client: Client, database: str, *, lag_threshold: float = 60.0) -> None:
        self.client = client
        self.database = database
        self.lag_threshold = lag_threshold

    def buckets(self, start: float, end: float) -> Buckets:
        by_bucket: dict[float, dict[str, float]] = {}
        for point in gauge_points(self.client, self.database, (INGEST_LAG_METRIC,), start, end):
            if point.service != SELF_SERVICE:
                continue
            values = by_bucket.setdefault(math.floor(point.time / self.step) * self.step, {})
            key = self._key(point.name, point.attributes)
            values[key] = max(values.get(key, point.value), point.value)  # the worst lag in the bucket
        for point in sum_points(self.client, self.database, SELF_SERVICE, _COUNTS, start, end):
            values = by_bucket.setdefault(math.floor(point.time / self.step) * self.step, {})
            key = self._key(point.name, point.attributes)
            values[key] = values.get(key, 0.0) + point.value  # items in the bucket
        return sorted(by_bucket.items())

    @staticmethod
    def _key(metric: str, attributes: dict[str, str]) -> str:
        parts = [metric, attributes.get("instance", ""), attributes.get("signal", ""), attributes.get("reason", "")]
        return json.dumps(parts, separators=(",", ":"))

    def new_detector(self, series: str) -> SeriesDetector:
        metric, instance, signal, reason = json.loads(series)
        if metric == INGEST_LAG_METRIC:
            return ThresholdDetector(
                threshold=self.lag_threshold,
                critical_above=_CRITICAL_LAG_FACTOR * self.lag_threshold,
                what=f"of ingest lag on {instance}: acknowledged data waits for ClickHouse "
                f"(threshold {self.lag_threshold:g} s)",
                unit="s",
            )
        items = _ITEMS.get(signal, f"{signal} items")
        if metric == REFUSED_METRIC:
            return ThresholdDetector(
                severity="warning" if reason == "backpressure" else "critical",
                aggregate="sum",
                what=f"refused with {_REFUSALS.get(reason, '500 (internal error)')} on {instance}",
                unit=items,
            )
        if metric == DROPPED_METRIC:
            return ThresholdDetector(
                severity="critical", aggregate="sum", what=f"lost on {instance}: the pipeline kept refusing them",
                unit=items,
            )  # fmt: skip
        if metric == REJECTED_REQUESTS_METRIC:
            return ThresholdDetector(
                severity="info", aggregate="sum", what=_REJECTIONS.get(reason, "rejected"), unit=f"{signal} requests"
            )
        return ThresholdDetector(
            severity="info", aggregate="sum", what="rejected as invalid", unit=_REJECTED_ITEMS.get(signal, items)
        )

    def absent_value(self, series: str) -> float | None:
        # No count written means nothing happened; no lag sample means no sampler ran (unknown).
        return None if json.loads(series)[0] == INGEST_LAG_METRIC else 0.0

    def describe(self, series: str) -> SeriesInfo:
        metric, instance, signal, reason = json.loads(series)
        if metric == INGEST_LAG_METRIC:
            return SeriesInfo(service=SELF_SERVICE, operation=instance, signal="ingest_lag", unit="s")
        kind = metric.rsplit(".", 1)[1] + (f"_{reason}" if reason else "")  # e.g. refused_items_backpressure
        return SeriesInfo(service=SELF_SERVICE, operation=signal, signal=kind, unit="items")

    def enrich(self, finding: Finding, now: float) -> Finding:
        return finding
