"""Service regressions: latency, error rate and throughput per service and per operation.

Series come from the per-minute RED rollup of entry spans (`spans_red_1m`): for each service
and for each (service, operation), latency p50/p95/p99 in ms, error rate, and requests per
minute. Latency and throughput series each have a `LevelShiftDetector` (latency watched for
rises only, throughput for drops and spikes); error rates an `ErrorRateDetector`.

Finding rules, as an on-call engineer may rely on them:
- Cold start: a series is judged only once its detector has a baseline (`warmup` buckets with
  data); a new service or operation produces no findings before then.
- A latency quantile of a minute with fewer requests than `MIN_REQUESTS` asks for it is "no
  data": p50 needs 5, p95 20 and p99 100, so that the quantile is more than the minute's slowest
  request or two (the p99 of 20 requests is their maximum, and one slow request a minute would
  look like a regression). A minute without requests counts as 0 throughput. Error rates are
  judged on counts (`ErrorRateDetector`), so low volume weighs as little as it should.
- One finding per excursion, opened at the detector's onset estimate, closed when the series
  is back to its baseline.
- Evidence when a finding opens: the deploy nearest before the onset (reported by a pipeline,
  or detected: the first minute a new `service.version` served requests), up to five trace ids of
  the slowest (latency, throughput) or erroring (error rate) requests since the onset, and the
  attribute values over-represented among the slow or erroring requests.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from vigil.detectors.base import SeriesDetector
from vigil.detectors.error_rate import ErrorRateDetector
from vigil.detectors.level_shift import LevelShiftDetector
from vigil.detectors.runner import Buckets, SeriesInfo
from vigil.store.deploys import DeployStore
from vigil.store.detector_read import exemplar_trace_ids, red_buckets, top_attributes
from vigil.store.findings import AttributeShare, Finding

__all__ = ["MIN_REQUESTS", "ServiceRegressions", "nearest_deploy"]

MIN_REQUESTS = {"latency_p50": 5, "latency_p95": 20, "latency_p99": 100}
# How far back from the onset the "before" of attribute shares and deploy search reach.
_BASELINE_WINDOW_S = 3600.0
_DEPLOY_LOOKBACK_S = 86400.0
# Onsets are estimates to a minute or two, so a version first seen this soon after one still counts.
_ONSET_SLACK_S = 180.0

_SIGNALS: dict[str, str] = {
    "latency_p50": "ms",
    "latency_p95": "ms",
    "latency_p99": "ms",
    "error_rate": "ratio",
    "throughput": "requests/min",
}


def nearest_deploy(client: Client, database: str, service: str, onset: float) -> tuple[str, str]:
    """The deploy of `service` nearest before `onset` (within a day), and a sentence naming it.

    Reported deploys and detected ones (a new `service.version` serving) alike; ("", "") when none.
    """
    # Onsets are estimates to a minute or two: a deploy just after the estimate still counts.
    deploy = DeployStore(client, database).nearest_before(service, onset + _ONSET_SLACK_S, lookback=_DEPLOY_LOOKBACK_S)
    if deploy is None:
        return "", ""
    at = datetime.fromtimestamp(deploy.started_at, UTC).strftime("%H:%M UTC")
    if deploy.detected:
        return deploy.id, f"Version {deploy.version} began serving at {at}."
    return deploy.id, f"Deploy of {deploy.version} ({deploy.kind}) started at {at}."


def series_key(service: str, operation: str, signal: str) -> str:
    return json.dumps([service, operation, signal], separators=(",", ":"))


class ServiceRegressions:
    """The service-regression family of detectors (see the module docstring)."""

    name = "service_regressions"
    kind = "service_regression"
    step = 60.0

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database

    def buckets(self, start: float, end: float) -> Buckets:
        by_minute: dict[float, dict[str, float | dict[str, float]]] = {}
        for b in red_buckets(self.client, self.database, start, end):
            values = by_minute.setdefault(b.minute, {})
            values[series_key(b.service, b.operation, "throughput")] = float(b.requests)
            if b.requests:
                values[series_key(b.service, b.operation, "error_rate")] = {"y": b.errors, "n": b.requests}
            for signal, value in (("latency_p50", b.p50_ms), ("latency_p95", b.p95_ms), ("latency_p99", b.p99_ms)):
                if b.requests >= MIN_REQUESTS[signal]:
                    values[series_key(b.service, b.operation, signal)] = value
        return sorted(by_minute.items())

    def new_detector(self, series: str) -> SeriesDetector:
        signal = json.loads(series)[2]
        if signal == "error_rate":
            return ErrorRateDetector()
        return LevelShiftDetector(direction="both" if signal == "throughput" else "up")

    def absent_value(self, series: str) -> float | None:
        return 0.0 if json.loads(series)[2] == "throughput" else None

    def describe(self, series: str) -> SeriesInfo:
        service, operation, signal = json.loads(series)
        return SeriesInfo(service=service, operation=operation, signal=signal, unit=_SIGNALS[signal])

    def enrich(self, finding: Finding, now: float) -> Finding:
        errors = finding.signal == "error_rate"
        exemplars = exemplar_trace_ids(
            self.client,
            self.database,
            service=finding.service,
            operation=finding.operation,
            start=finding.started_at,
            end=now,
            errors=errors,
        )
        slow_ms = None
        if finding.signal.startswith("latency"):
            # "Slow" is slower than the baseline value of the signal: for p95, the requests
            # that would have been the slowest 5% before.
            slow_ms = finding.baseline
        attributes: list[AttributeShare] = []
        if finding.signal != "throughput":
            attributes = top_attributes(
                self.client,
                self.database,
                service=finding.service,
                operation=finding.operation,
                bad_start=finding.started_at,
                bad_end=now,
                baseline_start=finding.started_at - _BASELINE_WINDOW_S,
                slow_ms=slow_ms,
            )
        deploy_id, note = nearest_deploy(self.client, self.database, finding.service, finding.started_at)
        summary = f"{finding.summary} {note}" if note else finding.summary
        return replace(
            finding,
            exemplar_trace_ids=tuple(exemplars),
            top_attributes=tuple(attributes),
            deploy_id=deploy_id,
            summary=summary,
        )
