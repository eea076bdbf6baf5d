"""Alerts: their states, the rules that make them, and silences."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Response
from pydantic import BaseModel, Field, field_validator

from vigil.alerts.rules import DEFAULT_RULES, parse_rules
from vigil.api.deps import get_reader, invalid_parameter, parse_since
from vigil.api.routers._responses import UNREADABLE_BODY, not_found
from vigil.settings import parse_duration
from vigil.store.alerts import AlertStore, Silence
from vigil.store.read import StoreReader

router = APIRouter(prefix="/api/v1", tags=["alerts"])

AlertStateName = Literal["pending", "firing", "resolved", "silenced", "inhibited"]
_MATCHER_LABELS = {"kind", "service", "severity", "rule", "operation", "signal"}
# A silence's times become datetimes (years 1 to 9999) and DateTime64 columns (to 2299); a start past
# 2100-01-01 is a typo, not a maintenance window.
_LATEST_START_S = 4_102_444_800


def _store(reader: StoreReader) -> AlertStore:
    return AlertStore(reader.client, reader.database)


@router.get("/alerts")
def list_alerts(
    reader: Annotated[StoreReader, Depends(get_reader)],
    state: AlertStateName | None = None,
    since: str = "1d",
) -> list[dict[str, Any]]:
    """Alerts, newest first: `state` one of pending (open, not yet for its rule's `for`), firing,
    silenced, inhibited (an SLO page of its service is firing) or resolved; resolved ones within
    `since` (default 1d). Times are unix seconds."""
    window = parse_since(since)
    states = [state] if state else None
    alerts = _store(reader).alerts(states=states, since=time.time() - window)
    return [asdict(alert) for alert in alerts]


@router.get("/alert-rules")
def get_rules(reader: Annotated[StoreReader, Depends(get_reader)]) -> dict[str, Any]:
    """The rules in force (`source`: file, api, or default when none were given)."""
    document = _store(reader).rules_document()
    if document is None:
        return {"source": "default", "rules": [rule.to_dict() for rule in DEFAULT_RULES]}
    return {"source": "stored", "rules": [rule.to_dict() for rule in parse_rules(document)]}


@router.put("/alert-rules", responses=UNREADABLE_BODY)
def put_rules(
    reader: Annotated[StoreReader, Depends(get_reader)],
    document: Annotated[dict[str, Any], Body(examples=[{"rules": [{"name": "all", "severity": "warning"}]}])],
) -> dict[str, Any]:
    """Replace every rule: `{"rules": [{name, kinds, services, severity, labels, for, channels,
    repeat, notify_severity}]}` (see the README); an invalid set is refused whole."""
    try:
        rules = parse_rules(document)
    except ValueError as exc:
        raise invalid_parameter("rules", document, str(exc), where="body") from None
    normalised = {"rules": [rule.to_dict() for rule in rules]}
    _store(reader).put_rules(normalised, "api")
    return {"source": "stored", **normalised}


class SilenceRequest(BaseModel):
    """Silence alerts whose labels equal every matcher, for `duration` (e.g. 2h) from `starts_at` (default now)."""

    # The schema names the labels too, so clients (and schemathesis) see them; the validator words the refusal.
    matchers: dict[str, str] = Field(
        min_length=1, json_schema_extra={"propertyNames": {"enum": [*sorted(_MATCHER_LABELS)]}}
    )
    author: str = Field(min_length=1, max_length=200)
    comment: str = Field(default="", max_length=2000)
    duration: str = "1h"
    starts_at: float | None = Field(default=None, ge=0, le=_LATEST_START_S)

    @field_validator("matchers")
    @classmethod
    def _known_labels(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - _MATCHER_LABELS)
        if unknown:
            raise ValueError(f"unknown label {unknown[0]!r}; expected some of {sorted(_MATCHER_LABELS)}")
        return value

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise ValueError("expected a duration such as 30m, 2h or 1d") from None
        if not 0 < seconds <= 90 * 86400:
            raise ValueError("must be between 1s and 90d")
        return value


@router.get("/silences")
def list_silences(reader: Annotated[StoreReader, Depends(get_reader)]) -> list[dict[str, Any]]:
    """Every silence, newest first, with `active` saying whether it silences now."""
    now = time.time()
    return [asdict(s) | {"active": s.active(now)} for s in _store(reader).silences()]


@router.post("/silences", status_code=201, responses=UNREADABLE_BODY)
def create_silence(reader: Annotated[StoreReader, Depends(get_reader)], body: SilenceRequest) -> dict[str, str]:
    starts = body.starts_at if body.starts_at is not None else time.time()
    silence = Silence(
        id="s-" + uuid.uuid4().hex[:16],
        matchers=body.matchers,
        author=body.author,
        comment=body.comment,
        starts_at=starts,
        ends_at=starts + parse_duration(body.duration),
    )
    _store(reader).write_silence(silence)
    return {"id": silence.id}


@router.delete("/silences/{silence_id}", status_code=204, responses=not_found("silence with that id"))
def expire_silence(reader: Annotated[StoreReader, Depends(get_reader)], silence_id: str) -> Response:
    """End a silence now (it stays listed, inactive)."""
    store = _store(reader)
    found = next((s for s in store.silences() if s.id == silence_id), None)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no silence with id {silence_id!r}")
    now = time.time()
    if found.ends_at > now:
        store.write_silence(Silence(**{**asdict(found), "ends_at": max(now, found.starts_at)}))
    return Response(status_code=204)
