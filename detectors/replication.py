"""Replication lag: every gauge named in VIGIL_REPLICATION_LAG_METRICS, one series per replica.

A series is one (service, metric, attribute set): e.g. ``db.replication.lag_seconds`` with
``replica=db-2`` from StatsD or OTLP. Buckets are 10 seconds wide, so a stall is flagged well
within a minute of starting rather than after the next closed minute; a bucket's value is
the highest lag reported in it. `ReplicationLagDetector` states the finding rules.
"""

from __future__ import annotations

import json
import math

from clickhouse_connect.driver.client import Client

from vigil.detectors.base import SeriesDetector
from vigil.detectors.replication_lag import ReplicationLagDetector
from vigil.detectors.runner import Buckets, SeriesInfo
from vigil.store.detector_read import gauge_points
from vigil.store.findings import Finding

__all__ = ["ReplicationLag"]


class ReplicationLag:
    name = "replication_lag"
    kind = "replication_lag"
    step = 10.0

    def __init__(self, client: Client, database: str, metrics: tuple[str, ...], threshold_seconds: float) -> None:
        self.client = client
        self.database = database
        self.metrics = metrics
        self.threshold_seconds = threshold_seconds

    def buckets(self, start: float, end: float) -> Buckets:
        by_bucket: dict[float, dict[str, float]] = {}
        for point in gauge_points(self.client, self.database, self.metrics, start, end):
            bucket = math.floor(point.time / self.step) * self.step
            key = json.dumps([point.service, point.name, sorted(point.attributes.items())], separators=(",", ":"))
            values = by_bucket.setdefault(bucket, {})
            values[key] = max(values.get(key, point.value), point.value)
        return sorted(by_bucket.items())

    def new_detector(self, series: str) -> SeriesDetector:
        return ReplicationLagDetector(threshold_seconds=self.threshold_seconds)

    def absent_value(self, series: str) -> float | None:
        return None  # silence is what the detector's "stopped reporting" rule watches for

    def describe(self, series: str) -> SeriesInfo:
        service, metric, attributes = json.loads(series)
        # The replica is what an on-call engineer names: the attribute set, e.g. "replica=db-2".
        replica = ",".join(f"{k}={v}" for k, v in attributes)
        return SeriesInfo(service=service, operation=replica, signal=metric, unit="s")

    def enrich(self, finding: Finding, now: float) -> Finding:
        return finding
