"""Canary analyses as stored: the question a pipeline asked, and the verdict once judged.

An analysis is written when it is asked for (``running``) and rewritten whole, with a newer
`UpdatedAt`, when its window has closed and it is judged (``done``); ReplacingMergeTree keeps the
newest, reads use FINAL. A done analysis never changes again, so a pipeline polling it, or
`vigil canary gate` run twice, sees one verdict.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from clickhouse_connect.driver.client import Client

from vigil.errors import StoreUnavailable

__all__ = ["CanaryAnalysis", "CanaryStore"]

Status = Literal["running", "done"]
Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE"]

_COLUMNS = (
    "Id",
    "ServiceName",
    "BaselineVersion",
    "CanaryVersion",
    "Environment",
    "WindowStart",
    "WindowEnd",
    "Operations",
    "CheckKinds",
    "MetricChecks",
    "Status",
    "Verdict",
    "Score",
    "Reason",
    "Checks",
    "ExemplarTraceIds",
    "CreatedAt",
    "UpdatedAt",
)


@dataclass(frozen=True, slots=True)
class CanaryAnalysis:
    id: str
    service: str
    baseline_version: str
    canary_version: str
    environment: str
    start: float  # unix seconds: the window compared
    end: float
    operations: int  # how many of the busiest operations get checks of their own
    check_kinds: tuple[str, ...] = ("latency", "error_rate")
    # Gauges compared between the versions: (metric name, the direction that is bad).
    metric_checks: tuple[tuple[str, str], ...] = ()
    status: Status = "running"
    verdict: Verdict = "INCONCLUSIVE"
    score: float | None = None
    reason: str = "not judged yet"
    checks: list[dict[str, Any]] = field(default_factory=list)
    exemplar_trace_ids: list[str] = field(default_factory=list)
    created_at: float = 0.0


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class CanaryStore:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database

    def write(self, analysis: CanaryAnalysis) -> None:
        row = [
            analysis.id,
            analysis.service,
            analysis.baseline_version,
            analysis.canary_version,
            analysis.environment,
            _utc(analysis.start),
            _utc(analysis.end),
            analysis.operations,
            list(analysis.check_kinds),
            json.dumps([list(check) for check in analysis.metric_checks]),
            analysis.status,
            analysis.verdict,
            analysis.score,
            analysis.reason,
            json.dumps(analysis.checks),
            list(analysis.exemplar_trace_ids),
            _utc(analysis.created_at),
            _utc(time.time()),
        ]
        try:
            self.client.insert(f"{self.database}.canary_analyses", [row], column_names=list(_COLUMNS))
        except Exception as exc:
            raise StoreUnavailable(f"ClickHouse did not accept the canary analysis: {exc}") from exc

    def _select(self, where: str, **parameters: Any) -> list[CanaryAnalysis]:
        rows = self.client.query(
            f"""SELECT Id, ServiceName, BaselineVersion, CanaryVersion, Environment,
                       toUnixTimestamp64Milli(WindowStart) / 1000, toUnixTimestamp64Milli(WindowEnd) / 1000,
                       Operations, CheckKinds, MetricChecks, Status, Verdict, Score, Reason, Checks,
                       ExemplarTraceIds,
                       toUnixTimestamp64Milli(CreatedAt) / 1000
                FROM {self.database}.canary_analyses FINAL WHERE {where} ORDER BY CreatedAt DESC""",
            parameters=parameters,
        ).result_rows
        return [
            CanaryAnalysis(
                id=row[0],
                service=row[1],
                baseline_version=row[2],
                canary_version=row[3],
                environment=row[4],
                start=float(row[5]),
                end=float(row[6]),
                operations=int(row[7]),
                check_kinds=tuple(row[8]),
                metric_checks=tuple((name, direction) for name, direction in json.loads(row[9] or "[]")),
                status=row[10],
                verdict=row[11],
                score=None if row[12] is None else float(row[12]),
                reason=row[13],
                checks=json.loads(row[14] or "[]"),
                exemplar_trace_ids=list(row[15]),
                created_at=float(row[16]),
            )
            for row in rows
        ]

    def get(self, analysis_id: str) -> CanaryAnalysis | None:
        found = self._select("Id = {id:String}", id=analysis_id)
        return found[0] if found else None

    def running_closed_by(self, at: float) -> list[CanaryAnalysis]:
        """Running analyses whose window ended at or before `at`: due to be judged."""
        return self._select(
            "Status = 'running' AND WindowEnd <= fromUnixTimestamp64Milli(toInt64({at:Float64} * 1000))", at=at
        )

    def recent(self, *, service: str | None, since: float, limit: int = 100) -> list[CanaryAnalysis]:
        where = "CreatedAt >= fromUnixTimestamp64Milli(toInt64({since:Float64} * 1000))"
        if service is not None:
            where += " AND ServiceName = {service:String}"
        return self._select(where, since=since, service=service or "")[:limit]
