"""Canary analyses: compare two versions of a service over one window, and keep the verdict.

A pipeline asks for an analysis (`new_analysis`) of a window, which may still be open. Asked
about it before the window closes, Vigil judges the requests so far and answers ``running``
with those interim figures; once the window has closed (plus `grace`, for late spans), the
analysis is judged for good (``done``) and stored, either when someone asks or by the
`CanaryFinalizer` running with the detectors, so an analysis nobody polls still gets its verdict.

Checks, per analysis: latency and error rate for the whole service (scope ``service``) and for
each of its `operations` busiest operations over both versions (scope ``operation``), and for
each gauge metric asked for (``metrics``), its points from each version compared in the direction
that is bad (at least 10 points a version, else inconclusive); judged by
`vigil.detectors.canary_judge` (a rank test with an effect tolerance for latency, Fisher's exact
test for errors, Holm correction across every check, too few requests = inconclusive).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import replace

import numpy as np
from clickhouse_connect.driver.client import Client

from vigil.detectors.canary_judge import ArmSample, CheckInput, CheckKind, Direction, Scope, judge
from vigil.store.canary_read import ArmRequests, arm_requests, canary_exemplars, gauge_values
from vigil.store.canary_store import CanaryAnalysis, CanaryStore

__all__ = ["BAD_DIRECTIONS", "CHECK_KINDS", "CanaryFinalizer", "analysis_id", "judge_analysis", "new_analysis"]

logger = logging.getLogger(__name__)

_EMPTY = np.empty(0, dtype=np.float64)
# The checks a pipeline may ask for by name (metric checks need inputs of their own).
CHECK_KINDS: dict[str, CheckKind] = {"latency": "latency", "error_rate": "error_rate"}
BAD_DIRECTIONS: dict[str, Direction] = {"increase": "increase", "decrease": "decrease"}
# A gauge reported every 10-60 s per instance gives tens of points a version in a 10-minute window.
_MIN_METRIC_VALUES = 10


def analysis_id(
    service: str, baseline: str, canary: str, environment: str, start: float, end: float, checks: str = ""
) -> str:
    """The same question asked twice (a retried pipeline step) is the same analysis."""
    key = f"{service}\0{baseline}\0{canary}\0{environment}\0{int(start * 1000)}\0{int(end * 1000)}\0{checks}"
    return "c-" + hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def new_analysis(
    service: str,
    baseline: str,
    canary: str,
    environment: str,
    start: float,
    end: float,
    operations: int,
    check_kinds: tuple[str, ...] = ("latency", "error_rate"),
    metric_checks: tuple[tuple[str, str], ...] = (),
) -> CanaryAnalysis:
    return CanaryAnalysis(
        id=analysis_id(
            service, baseline, canary, environment, start, end, repr((operations, check_kinds, metric_checks))
        ),
        service=service,
        baseline_version=baseline,
        canary_version=canary,
        environment=environment,
        start=start,
        end=end,
        operations=operations,
        check_kinds=check_kinds,
        metric_checks=metric_checks,
        created_at=time.time(),
    )


def _sample(arm: ArmRequests | None) -> ArmSample:
    if arm is None:
        return ArmSample(_EMPTY, errors=0, requests=0)
    return ArmSample(arm.latencies_ms, errors=arm.errors, requests=arm.requests)


def judge_analysis(
    client: Client, database: str, analysis: CanaryAnalysis, *, now: float, grace: float, min_requests: int
) -> CanaryAnalysis:
    """`analysis` judged on the requests up to `now`: ``done`` if its window closed `grace` ago."""
    end = min(analysis.end, now)
    versions = (analysis.baseline_version, analysis.canary_version)
    arms = arm_requests(
        client,
        database,
        service=analysis.service,
        versions=versions,
        environment=analysis.environment,
        start=analysis.start,
        end=end,
        operations=analysis.operations,
    )
    by_key = {(arm.operation, arm.version): arm for arm in arms}
    busiest = sorted(
        {arm.operation for arm in arms if arm.operation},
        key=lambda op: (-sum(a.requests for a in arms if a.operation == op), op),
    )
    checks: list[CheckInput] = []
    for operation in ["", *busiest]:
        name = operation or analysis.service
        scope: Scope = "operation" if operation else "service"
        baseline = _sample(by_key.get((operation, analysis.baseline_version)))
        canary = _sample(by_key.get((operation, analysis.canary_version)))
        for kind in analysis.check_kinds:
            checks.append(CheckInput(name, CHECK_KINDS[kind], baseline, canary, scope=scope))
    for metric, bad_direction in analysis.metric_checks:
        values = {
            version: gauge_values(
                client,
                database,
                service=analysis.service,
                metric=metric,
                version=version,
                environment=analysis.environment,
                start=analysis.start,
                end=end,
            )
            for version in versions
        }
        # A gauge may be watched both ways (CPU too high, throughput too low): named apart.
        checks.append(
            CheckInput(
                metric if bad_direction == "increase" else f"{metric} (decrease)",
                "metric",
                values[analysis.baseline_version],
                values[analysis.canary_version],
                bad_direction=BAD_DIRECTIONS[bad_direction],
            )
        )
    judgement = judge(checks, min_requests=min_requests, min_metric_values=_MIN_METRIC_VALUES)
    exemplars = canary_exemplars(
        client,
        database,
        service=analysis.service,
        version=analysis.canary_version,
        environment=analysis.environment,
        start=analysis.start,
        end=end,
    )
    result = judgement.to_dict()
    return replace(
        analysis,
        status="done" if now >= analysis.end + grace else "running",
        verdict=result["verdict"],
        score=result["score"],
        reason=result["reason"],
        checks=result["checks"],
        exemplar_trace_ids=exemplars,
    )


class CanaryFinalizer:
    """Judges, for good, every running analysis whose window has closed (runs with the detectors)."""

    def __init__(self, client: Client, database: str, *, grace: float, min_requests: int) -> None:
        self.store = CanaryStore(client, database)
        self.client = client
        self.database = database
        self.grace = grace
        self.min_requests = min_requests

    def run(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        done = 0
        for analysis in self.store.running_closed_by(now - self.grace):
            judged = judge_analysis(
                self.client, self.database, analysis, now=now, grace=self.grace, min_requests=self.min_requests
            )
            self.store.write(judged)
            logger.info("canary analysis %s of %s: %s", judged.id, judged.service, judged.verdict)
            done += 1
        return done
