"""Findings and detector state: what the detectors write, and the API and alerts read.

A finding is one excursion of one series: opened at its onset, rewritten while it develops,
closed when the series is back to normal. Every write is a whole new row with a newer
`UpdatedAt`; ReplacingMergeTree keeps the newest, and reads use FINAL. Ids come from the
series and the onset (`finding_id`), so a bucket replayed after a restart rewrites the
finding it already wrote instead of adding a second one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from clickhouse_connect.driver.client import Client

from vigil.errors import StoreUnavailable

__all__ = [
    "AttributeShare",
    "DetectorState",
    "Finding",
    "FindingQuery",
    "FindingStore",
    "finding_id",
]

FindingStatus = Literal["open", "closed"]

_COLUMNS = (
    "Id",
    "Kind",
    "ServiceName",
    "Operation",
    "Signal",
    "SeriesKey",
    "StartedAt",
    "EndedAt",
    "Status",
    "Severity",
    "Score",
    "Baseline",
    "Observed",
    "Unit",
    "Summary",
    "DeployId",
    "ExemplarTraceIds",
    "TopAttributes",
    "UpdatedAt",
)


@dataclass(frozen=True, slots=True)
class AttributeShare:
    """An attribute value over-represented among the bad requests of a finding."""

    attribute: str  # e.g. "cloud.region"
    value: str  # e.g. "eu-west-1"
    share: float  # of bad requests in the anomalous window that have it, 0..1
    baseline_share: float  # of all requests before the onset that had it, 0..1


@dataclass(frozen=True, slots=True)
class Finding:
    id: str
    kind: str  # service_regression, replication_lag, log_pattern, network, slo_burn
    service: str
    operation: str  # "" when the finding is about the whole service (or not about a service)
    signal: str  # e.g. latency_p95, error_rate, throughput, lag_growing, new_template
    series: str  # the detector's series key, unique within the kind
    started_at: float  # unix seconds
    ended_at: float | None
    status: FindingStatus
    severity: str
    score: float
    baseline: float
    observed: float
    unit: str  # of baseline and observed: ms, ratio, requests/min, s, bits/s, lines/min
    summary: str
    deploy_id: str = ""
    exemplar_trace_ids: tuple[str, ...] = ()
    top_attributes: tuple[AttributeShare, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class FindingQuery:
    since: float  # unix seconds: findings open at or after this time (started, or still open)
    until: float | None = None  # unix seconds: only findings that started by then
    service: str | None = None
    kind: str | None = None
    status: FindingStatus | None = None
    limit: int = 200


@dataclass(frozen=True, slots=True)
class DetectorState:
    watermark: float  # unix seconds: the end of the last bucket consumed
    state: bytes


def finding_id(kind: str, series: str, started_at: float) -> str:
    """A stable id for the excursion of `series` that began at `started_at`.

    >>> finding_id("service_regression", "checkout|latency_p95", 1.7e9)
    'f-26f9a9caf7d60043cfdb'
    """
    digest = hashlib.blake2b(f"{kind}\0{series}\0{int(started_at)}".encode(), digest_size=10).hexdigest()
    return f"f-{digest}"


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _row(finding: Finding, updated_at: float) -> list[Any]:
    top = [
        {"attribute": a.attribute, "value": a.value, "share": a.share, "baseline_share": a.baseline_share}
        for a in finding.top_attributes
    ]
    return [
        finding.id,
        finding.kind,
        finding.service,
        finding.operation,
        finding.signal,
        finding.series,
        _utc(int(finding.started_at)),
        None if finding.ended_at is None else _utc(int(finding.ended_at)),
        finding.status,
        finding.severity,
        float(finding.score),
        float(finding.baseline),
        float(finding.observed),
        finding.unit,
        finding.summary,
        finding.deploy_id,
        list(finding.exemplar_trace_ids),
        json.dumps(top),
        _utc(updated_at),
    ]


def _finding(row: Sequence[Any]) -> Finding:
    values = dict(zip(_COLUMNS, row, strict=True))
    ended = values["EndedAt"]
    return Finding(
        id=values["Id"],
        kind=values["Kind"],
        service=values["ServiceName"],
        operation=values["Operation"],
        signal=values["Signal"],
        series=values["SeriesKey"],
        started_at=float(values["StartedAt"].timestamp()),
        ended_at=None if ended is None else float(ended.timestamp()),
        status=values["Status"],
        severity=values["Severity"],
        score=float(values["Score"]),
        baseline=float(values["Baseline"]),
        observed=float(values["Observed"]),
        unit=values["Unit"],
        summary=values["Summary"],
        deploy_id=values["DeployId"],
        exemplar_trace_ids=tuple(values["ExemplarTraceIds"]),
        top_attributes=tuple(AttributeShare(**item) for item in json.loads(values["TopAttributes"] or "[]")),
    )


class FindingStore:
    """Reads and writes findings and detector state in one database."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database
        self._last_update = 0.0

    def _updated_at(self) -> float:
        # Strictly increasing, so two writes of one finding within a millisecond keep their order.
        now = max(time.time(), self._last_update + 0.001)
        self._last_update = now
        return now

    def write(self, findings: list[Finding]) -> None:
        if not findings:
            return
        rows = [_row(finding, self._updated_at()) for finding in findings]
        try:
            self.client.insert(f"{self.database}.findings", rows, column_names=list(_COLUMNS))
        except Exception as exc:
            raise StoreUnavailable(f"ClickHouse did not accept {len(rows)} findings: {exc}") from exc

    def query(self, q: FindingQuery) -> list[Finding]:
        where = [
            "(StartedAt >= toDateTime({since:Float64}) OR EndedAt IS NULL OR EndedAt >= toDateTime({since:Float64}))"
        ]
        params: dict[str, Any] = {"since": q.since, "limit": q.limit}
        if q.until is not None:
            where.append("StartedAt <= toDateTime({until:Float64})")
            params["until"] = q.until
        if q.service is not None:
            where.append("ServiceName = {service:String}")
            params["service"] = q.service
        if q.kind is not None:
            where.append("Kind = {kind:String}")
            params["kind"] = q.kind
        if q.status is not None:
            where.append("Status = {status:String}")
            params["status"] = q.status
        rows = self.client.query(
            f"SELECT {', '.join(_COLUMNS)} FROM {self.database}.findings FINAL WHERE {' AND '.join(where)} "
            "ORDER BY StartedAt DESC, Id LIMIT {limit:UInt32}",
            parameters=params,
        ).result_rows
        return [_finding(row) for row in rows]

    def get(self, finding_id: str) -> Finding | None:
        rows = self.client.query(
            f"SELECT {', '.join(_COLUMNS)} FROM {self.database}.findings FINAL WHERE Id = {{id:String}}",
            parameters={"id": finding_id},
        ).result_rows
        return _finding(rows[0]) if rows else None

    def open_findings(self, kind: str) -> list[Finding]:
        """Every open finding of `kind`: what a detector resumes after a restart."""
        rows = self.client.query(
            f"SELECT {', '.join(_COLUMNS)} FROM {self.database}.findings FINAL "
            "WHERE Kind = {kind:String} AND Status = 'open'",
            parameters={"kind": kind},
        ).result_rows
        return [_finding(row) for row in rows]

    def delete_since(self, kind: str, since: float) -> None:
        """Forget findings of `kind` that started at or after `since` (a backfill rewrites them)."""
        self.client.command(
            f"DELETE FROM {self.database}.findings "
            "WHERE Kind = {kind:String} AND StartedAt >= toDateTime({since:Float64})",
            parameters={"kind": kind, "since": since},
        )

    def load_state(self, detector: str) -> DetectorState | None:
        rows = self.client.query(
            f"SELECT toUnixTimestamp(Watermark), State FROM {self.database}.detector_state FINAL "
            "WHERE Detector = {d:String}",
            parameters={"d": detector},
        ).result_rows
        if not rows:
            return None
        watermark, state = rows[0]
        return DetectorState(watermark=float(watermark), state=base64.b64decode(state))

    def save_state(self, detector: str, state: DetectorState) -> None:
        # Base64: String columns hold bytes, but not every client path round-trips them unchanged.
        row = [
            detector,
            _utc(int(state.watermark)),
            base64.b64encode(state.state).decode(),
            _utc(self._updated_at()),
        ]
        try:
            self.client.insert(
                f"{self.database}.detector_state", [row], column_names=["Detector", "Watermark", "State", "UpdatedAt"]
            )
        except Exception as exc:
            raise StoreUnavailable(f"ClickHouse did not accept the state of detector {detector}: {exc}") from exc
