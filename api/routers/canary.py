"""Canary analyses for CI/CD: promote or roll back, with the evidence."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field, field_validator, model_validator

from vigil.api.deps import TimeWindow, get_reader, last_week, unix_seconds
from vigil.api.routers._responses import UNREADABLE_BODY, not_found
from vigil.detectors.canary import judge_analysis, new_analysis
from vigil.settings import Settings, parse_duration
from vigil.store.canary_store import CanaryAnalysis, CanaryStore
from vigil.store.read import StoreReader

router = APIRouter(prefix="/api/v1/canary/analyses", tags=["canary"])

_MAX_NAME = 200
_MAX_DURATION_S = 86400.0
_MIN_DURATION_S = 60.0
# How far ahead a window may start: a pipeline may ask before it shifts traffic.
_MAX_LEAD_S = 3600.0


class MetricCheck(BaseModel):
    """A gauge compared between the versions, e.g. each instance's process.cpu.utilization."""

    name: str = Field(min_length=1, max_length=_MAX_NAME)
    bad_direction: Literal["increase", "decrease"] = "increase"


class AnalysisRequest(BaseModel):
    """What to compare. `start` is ISO 8601 (UTC if no zone) or unix seconds, default now;
    `duration` like 10m (1m to 24h)."""

    service: str = Field(min_length=1, max_length=_MAX_NAME)
    baseline_version: str = Field(min_length=1, max_length=_MAX_NAME)
    canary_version: str = Field(min_length=1, max_length=_MAX_NAME)
    environment: str = Field(default="", max_length=_MAX_NAME)
    start: datetime | None = None
    duration: str = "10m"
    operations: int = Field(default=5, ge=0, le=20)
    checks: list[Literal["latency", "error_rate"]] = Field(default=["latency", "error_rate"], min_length=1)
    metrics: list[MetricCheck] = Field(default=[], max_length=10)

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise ValueError("expected a duration such as 10m or 1h") from None
        if not _MIN_DURATION_S <= seconds <= _MAX_DURATION_S:
            raise ValueError("must be between 1m and 24h")
        return value

    @model_validator(mode="after")
    def _different_versions(self) -> AnalysisRequest:
        if self.baseline_version == self.canary_version:
            raise ValueError("baseline_version and canary_version are the same; compare two versions")
        metrics = [(m.name, m.bad_direction) for m in self.metrics]
        if len(set(metrics)) != len(metrics):
            raise ValueError("a metric is listed twice with the same bad_direction")
        return self


class AnalysisCreated(BaseModel):
    id: str


class Analysis(BaseModel):
    """An analysis: `running` while its window is open (figures so far), then `done` for good."""

    id: str
    status: Literal["running", "done"]
    verdict: Literal["PASS", "FAIL", "INCONCLUSIVE"]
    score: float | None
    reason: str
    checks: list[dict[str, Any]]
    exemplar_trace_ids: list[str]
    service: str
    baseline_version: str
    canary_version: str
    environment: str
    start: float
    end: float

    @classmethod
    def of(cls, analysis: CanaryAnalysis) -> Analysis:
        return cls(
            id=analysis.id,
            status=analysis.status,
            verdict=analysis.verdict,
            score=analysis.score,
            reason=analysis.reason,
            checks=analysis.checks,
            exemplar_trace_ids=analysis.exemplar_trace_ids,
            service=analysis.service,
            baseline_version=analysis.baseline_version,
            canary_version=analysis.canary_version,
            environment=analysis.environment,
            start=analysis.start,
            end=analysis.end,
        )


def _store(reader: StoreReader) -> CanaryStore:
    return CanaryStore(reader.client, reader.database)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def judged_analysis(reader: StoreReader, settings: Settings, analysis: CanaryAnalysis) -> CanaryAnalysis:
    if analysis.status == "done":
        return analysis
    judged = judge_analysis(
        reader.client,
        reader.database,
        analysis,
        now=time.time(),
        grace=settings.detector_grace,
        min_requests=settings.canary_min_requests,
    )
    if judged.status == "done":
        _store(reader).write(judged)
    return judged


@router.post("", status_code=201, response_model=AnalysisCreated, responses=UNREADABLE_BODY)
def create_analysis(
    reader: Annotated[StoreReader, Depends(get_reader)],
    settings: Annotated[Settings, Depends(_settings)],
    body: AnalysisRequest,
) -> AnalysisCreated:
    """Ask for a canary analysis: the canary version against the baseline version of `service`
    over [start, start + duration). `checks` picks latency and/or error rate (for the service and
    its `operations` busiest operations); `metrics` adds gauges reported by both versions (e.g.
    `{"name": "process.cpu.utilization", "bad_direction": "increase"}`). Poll
    `GET /api/v1/canary/analyses/{id}` for the verdict. The same request sent again is the same
    analysis."""
    now = time.time()
    start = now if body.start is None else unix_seconds(body.start)
    if start > now + _MAX_LEAD_S:
        raise HTTPException(
            status_code=422,
            detail=[
                {
                    "type": "value_error",
                    "loc": ["body", "start"],
                    "msg": "starts more than an hour from now",
                    "input": start,
                }
            ],
        )
    analysis = new_analysis(
        body.service,
        body.baseline_version,
        body.canary_version,
        body.environment,
        start,
        start + parse_duration(body.duration),
        body.operations,
        tuple(body.checks),
        tuple((metric.name, metric.bad_direction) for metric in body.metrics),
    )
    store = _store(reader)
    if store.get(analysis.id) is None:
        store.write(analysis)
    return AnalysisCreated(id=analysis.id)


@router.get("/{analysis_id}", response_model=Analysis, responses=not_found("canary analysis with that id"))
def get_analysis(
    reader: Annotated[StoreReader, Depends(get_reader)],
    settings: Annotated[Settings, Depends(_settings)],
    analysis_id: str,
) -> Analysis:
    """The verdict: PASS, FAIL or INCONCLUSIVE with a score (percentage of conclusive checks that
    pass), a reason, each check's per-version figures and test, and trace ids of the canary's
    erroring or slowest requests. While the window is open, `status` is `running` and the
    figures are those so far."""
    analysis = _store(reader).get(analysis_id)
    if analysis is None:
        raise HTTPException(status_code=404, detail=f"no canary analysis with id {analysis_id!r}")
    return Analysis.of(judged_analysis(reader, settings, analysis))


@router.get("", response_model=list[Analysis])
def list_analyses(
    reader: Annotated[StoreReader, Depends(get_reader)],
    window: Annotated[TimeWindow, Depends(last_week)],
    service: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[Analysis]:
    """Analyses asked for in the window (`since`, default 7d), newest first, as stored (a running
    analysis is judged when fetched by id, or by the detectors once its window closes)."""
    return [Analysis.of(a) for a in _store(reader).recent(service=service, since=window.start_s, limit=limit)]
