"""What a canary analysis reads: each version's requests in one window, per service and operation.

A request is an entry span (server or consumer, or a root span), as in the RED rollup. Counts
and error counts are exact; latencies are a seeded random sample of at most `LATENCY_SAMPLE`
durations per arm and operation, which keeps a window of millions of requests cheap to judge
while a rank test on that many values still sees any shift worth failing a canary for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from clickhouse_connect.driver.client import Client

__all__ = ["LATENCY_SAMPLE", "ArmRequests", "arm_requests", "canary_exemplars", "gauge_values"]

LATENCY_SAMPLE = 50_000
_ENTRY = "(SpanKind IN ('Server', 'Consumer') OR ParentSpanId = '')"
_WINDOW = (
    "Timestamp >= fromUnixTimestamp64Milli(toInt64({start:Float64} * 1000)) "
    "AND Timestamp < fromUnixTimestamp64Milli(toInt64({end:Float64} * 1000))"
)


@dataclass(frozen=True, slots=True)
class ArmRequests:
    """One version's requests to one operation ("" for the whole service) in the window."""

    version: str
    operation: str
    requests: int
    errors: int
    latencies_ms: npt.NDArray[np.float64]


def _environment_filter(environment: str) -> str:
    return "AND ResourceAttributes['deployment.environment'] = {environment:String}" if environment else ""


def arm_requests(
    client: Client,
    database: str,
    *,
    service: str,
    versions: tuple[str, str],
    environment: str,
    start: float,
    end: float,
    operations: int,
) -> list[ArmRequests]:
    """Per version: the whole service, and its `operations` busiest operations (by both versions' requests)."""
    parameters = {
        "service": service,
        "versions": list(versions),
        "environment": environment,
        "start": start,
        "end": end,
        "operations": operations,
    }
    where = (
        f"ServiceName = {{service:String}} AND ServiceVersion IN {{versions:Array(String)}} "
        f"AND {_ENTRY} AND {_WINDOW} {_environment_filter(environment)}"
    )
    # GROUPING SETS: the whole service and each top operation in one scan; grouping(SpanName) is
    # 1 on the whole-service rows.
    rows = client.query(
        f"""
        WITH top AS (
            SELECT SpanName FROM {database}.spans WHERE {where}
            GROUP BY SpanName ORDER BY count() DESC, SpanName LIMIT {{operations:UInt32}}
        )
        SELECT ServiceVersion, if(grouping(SpanName) = 1, '', SpanName) AS operation,
               count(), countIf(StatusCode = 'Error'),
               groupArraySample({LATENCY_SAMPLE}, 7)(Duration / 1e6)
        FROM {database}.spans
        WHERE {where}
        GROUP BY GROUPING SETS ((ServiceVersion), (ServiceVersion, SpanName))
        HAVING grouping(SpanName) = 1 OR SpanName IN (SELECT SpanName FROM top)""",
        parameters=parameters,
    ).result_rows
    return [
        ArmRequests(
            version=version,
            operation=operation,
            requests=int(requests),
            errors=int(errors),
            latencies_ms=np.asarray(latencies, dtype=np.float64),
        )
        for version, operation, requests, errors, latencies in rows
    ]


def canary_exemplars(
    client: Client,
    database: str,
    *,
    service: str,
    version: str,
    environment: str,
    start: float,
    end: float,
    limit: int = 5,
) -> list[str]:
    """Trace ids of the canary's erroring requests, then its slowest, in the window."""
    rows = client.query(
        f"""SELECT TraceId FROM {database}.spans
            WHERE ServiceName = {{service:String}} AND ServiceVersion = {{version:String}} AND {_ENTRY}
              AND {_WINDOW} {_environment_filter(environment)}
            ORDER BY StatusCode = 'Error' DESC, Duration DESC LIMIT {{limit:UInt32}}""",
        parameters={
            "service": service,
            "version": version,
            "environment": environment,
            "start": start,
            "end": end,
            "limit": limit,
        },
    ).result_rows
    return [str(row[0]) for row in rows]


def gauge_values(
    client: Client,
    database: str,
    *,
    service: str,
    metric: str,
    version: str,
    environment: str,
    start: float,
    end: float,
) -> npt.NDArray[np.float64]:
    """Every point of gauge `metric` reported by `version` of `service` in the window (at most
    `LATENCY_SAMPLE`, sampled), e.g. each instance's CPU every export interval."""
    environment_filter = (
        "AND ResourceAttributes['deployment.environment'] = {environment:String}" if environment else ""
    )
    rows = client.query(
        f"""SELECT groupArraySample({LATENCY_SAMPLE}, 7)(Value) FROM {database}.metrics_gauge
            WHERE ServiceName = {{service:String}} AND ServiceVersion = {{version:String}}
              AND MetricName = {{metric:String}} {environment_filter}
              AND TimeUnix >= fromUnixTimestamp64Milli(toInt64({{start:Float64}} * 1000))
              AND TimeUnix < fromUnixTimestamp64Milli(toInt64({{end:Float64}} * 1000))""",
        parameters={
            "service": service,
            "version": version,
            "metric": metric,
            "environment": environment,
            "start": start,
            "end": end,
        },
    ).result_rows
    return np.asarray(rows[0][0] if rows else [], dtype=np.float64)
