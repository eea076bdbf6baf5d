"""Monitors: the metric queries of alert rules with a `monitor`, judged every closed minute.

Monitor definitions live in the alert rules (`vigil.store.monitors`). Each minute, each monitor's
query (the metrics API's: metric, aggregation, filter, group-by) gives one value per group; a
group is a series. A threshold condition is breached while the value crosses it: a finding of
kind ``monitor`` opens at the first breaching minute and closes at the first minute back (the
alert rule's ``for`` then decides when it pages). ``anomalous`` uses the level-shift detector of
service regressions instead, with its cold start. A minute without points is "no data": it neither
breaches nor ends a breach.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import replace

from clickhouse_connect.driver.client import Client

from vigil.detectors.base import Anomaly, Observation, SeriesDetector
from vigil.detectors.level_shift import LevelShiftDetector
from vigil.detectors.runner import Buckets, SeriesInfo
from vigil.store.alerts import AlertStore
from vigil.store.findings import Finding
from vigil.store.metrics_read import MetricQuery, MetricQueryError
from vigil.store.monitors import MonitorSpec, parse_monitor
from vigil.store.read import StoreReader

__all__ = ["Monitors", "ThresholdDetector"]

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


class ThresholdDetector:
    """Open while the value crosses the threshold; onset at the first crossing minute."""

    def __init__(self, op: str, threshold: float) -> None:
        self.op = op
        self.threshold = threshold
        self._onset: float | None = None
        self._worst = 0.0
        self._last = 0.0

    def score_one(self, x: Observation) -> float:
        return 1.0 if "y" in x and _OPERATORS[self.op](x["y"], self.threshold) else 0.0

    def learn_one(self, x: Observation) -> None:
        if "y" not in x:
            return
        y = x["y"]
        if _OPERATORS[self.op](y, self.threshold):
            if self._onset is None:
                self._onset, self._worst = x["t"], y
            self._worst = max(self._worst, y) if self.op.startswith(">") else min(self._worst, y)
            self._last = y
        else:
            self._onset = None

    def anomaly(self) -> Anomaly | None:
        if self._onset is None:
            return None
        return Anomaly(
            onset=self._onset,
            baseline=self.threshold,
            observed=self._last,
            score=1.0,
            severity="warning",
            summary=f"is {self._last:g}, {self.op} {self.threshold:g} (worst {self._worst:g}).",
        )


def _monitors(store: AlertStore) -> dict[str, MonitorSpec]:
    document = store.rules_document() or {"rules": []}
    return {
        rule["name"]: parse_monitor(f"rule {rule['name']!r}", rule["monitor"])
        for rule in document.get("rules", [])
        if rule.get("monitor")
    }


class Monitors:
    name = "monitors"
    kind = "monitor"
    step = 60.0

    def __init__(self, client: Client, database: str) -> None:
        self.reader = StoreReader(client, database)
        self.store = AlertStore(client, database)
        self._monitors: dict[str, MonitorSpec] = {}

    def buckets(self, start: float, end: float) -> Buckets:
        self._monitors = _monitors(self.store)
        by_minute: dict[float, dict[str, float | dict[str, float]]] = {}
        for name, monitor in self._monitors.items():
            types = self.reader.metric_types(monitor.metric)
            if not types:
                continue  # nothing reported yet
            query = MetricQuery(
                name=monitor.metric,
                metric_type=types[0],
                agg=monitor.agg,  # type: ignore[arg-type]
                step_s=int(self.step),
                start_s=start,
                end_s=end - 1e-3,
                group_by=monitor.group_by,
                filters=monitor.filters,
            )
            try:
                series = self.reader.metric_series(query)
            except MetricQueryError:
                continue  # e.g. `rate` of a gauge: the rule was accepted, the metric's type changed since
            for one in series:
                key = json.dumps([name, sorted(one.labels.items())])
                for t, value in one.points:
                    if start <= t < end:
                        by_minute.setdefault(float(t), {})[key] = float(value)
        return sorted(by_minute.items())

    def new_detector(self, series: str) -> SeriesDetector:
        name = json.loads(series)[0]
        monitor = self._monitors.get(name)
        comparison = monitor.comparison if monitor else None
        if comparison is None:
            return LevelShiftDetector(direction="both")
        return ThresholdDetector(*comparison)

    def absent_value(self, series: str) -> float | None:
        return None

    def describe(self, series: str) -> SeriesInfo:
        name, labels = json.loads(series)
        labels = dict(labels)
        monitor = self._monitors.get(name)
        return SeriesInfo(
            # Grouped by service, the service; else the monitor is what an on-call engineer names.
            service=labels.get("service", name),
            operation=name,
            signal=monitor.metric if monitor else "",
            unit="",
        )

    def enrich(self, finding: Finding, now: float) -> Finding:
        _, labels = json.loads(finding.series)
        where = ", ".join(f"{k}={v}" for k, v in labels)
        monitor = self._monitors.get(finding.operation)
        what = f"{monitor.agg} {monitor.metric}" if monitor else finding.signal
        return replace(
            finding, summary=f"Monitor {finding.operation}: {what}{f' ({where})' if where else ''} {finding.summary}"
        )
