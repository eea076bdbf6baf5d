"""Deploy events: reported by pipelines, or detected when a new `service.version` serves requests."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field, field_validator, model_validator

from vigil.api.deps import TimeWindow, get_reader, last_week, unix_seconds
from vigil.api.routers._responses import UNREADABLE_BODY, not_found
from vigil.store.deploys import Deploy, DeployStore, deploy_id
from vigil.store.read import StoreReader

router = APIRouter(prefix="/api/v1/deploys", tags=["deploys"])

# Longer than any sensible name, short enough that a pasted log line is refused.
_MAX_NAME = 200


class DeployReport(BaseModel):
    """A deploy as a pipeline reports it. Times are ISO 8601 (with a zone; UTC if none) or unix seconds."""

    service: str = Field(min_length=1, max_length=_MAX_NAME)
    version: str = Field(min_length=1, max_length=_MAX_NAME)
    environment: str = Field(default="production", min_length=1, max_length=_MAX_NAME)
    kind: Literal["canary", "rolling", "full"] = "full"
    commit: str = Field(default="", max_length=_MAX_NAME)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    url: str = Field(default="", max_length=2048)
    description: str = Field(default="", max_length=4096)

    @field_validator("service", "version", "environment")
    @classmethod
    def _no_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @model_validator(mode="after")
    def _finished_after_started(self) -> DeployReport:
        if self.started_at is not None and self.finished_at is not None and self.finished_at < self.started_at:
            raise ValueError("finished_at is before started_at")
        return self


class DeployCreated(BaseModel):
    id: str


def _store(reader: StoreReader) -> DeployStore:
    return DeployStore(reader.client, reader.database)


@router.post("", status_code=201, response_model=DeployCreated, responses=UNREADABLE_BODY)
def report_deploy(reader: Annotated[StoreReader, Depends(get_reader)], report: DeployReport) -> DeployCreated:
    """Record a deploy. `started_at` defaults to now; the same report sent again (same service,
    version, environment and `started_at`) is the same deploy, so a retried pipeline step does
    not add a second one. Send it again with `finished_at` to mark the deploy finished."""
    started = unix_seconds(report.started_at) if report.started_at is not None else time.time()
    deploy = Deploy(
        id=deploy_id(report.service, report.version, report.environment, started),
        service=report.service,
        version=report.version,
        environment=report.environment,
        kind=report.kind,
        commit=report.commit,
        started_at=started,
        finished_at=unix_seconds(report.finished_at) if report.finished_at is not None else None,
        url=report.url,
        description=report.description,
        detected=False,
    )
    _store(reader).write(deploy)
    return DeployCreated(id=deploy.id)


@router.get("", response_model=list[Deploy])
def list_deploys(
    reader: Annotated[StoreReader, Depends(get_reader)],
    window: Annotated[TimeWindow, Depends(last_week)],
    service: str | None = None,
    environment: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[Deploy]:
    """Deploys that started in the window (`since`, default 7d), newest first: reported ones and
    detected ones (`detected: true`, kind `unknown`: the first minute a new `service.version`
    served requests, when no pipeline reported that version). Times are unix seconds."""
    return _store(reader).query(
        service=service, start=window.start_s, end=window.end_s, environment=environment, limit=limit
    )


@router.get("/{deploy_id}", response_model=Deploy, responses=not_found("deploy with that id"))
def get_deploy(reader: Annotated[StoreReader, Depends(get_reader)], deploy_id: str) -> Deploy:
    """One deploy by id, reported or detected."""
    deploy = _store(reader).get(deploy_id)
    if deploy is None:
        raise HTTPException(status_code=404, detail=f"no deploy with id {deploy_id!r}")
    return deploy
