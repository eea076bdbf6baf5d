"""The alerts page: alerts firing and pending now, those resolved in the range, and silences,
which can be created and expired from the page (through the API's own validation and store)."""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from vigil.api.routers.alerts import SilenceRequest, create_silence, expire_silence
from vigil.dashboards.pages._oncall import service_url_at
from vigil.dashboards.render import PageError, Range, Reader, duration_text, link, may_change, render, signed_in
from vigil.dashboards.timerange import TimeRange
from vigil.store.alerts import AlertState, AlertStore, Silence

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

# Most urgent first: what pages someone, what is about to, what is held back.
_STATE_ORDER = {"firing": 0, "pending": 1, "silenced": 2, "inhibited": 3}
_FORM_FIELDS = ("matchers", "duration", "comment", "created_by")
_FIELD_LABELS = {"matchers": "Matchers", "duration": "Duration", "comment": "Comment", "author": "Created by"}
_DEFAULT_DURATION = "2h"
_MARGIN_S = 15 * 60


class BadSilence(ValueError):
    """A silence form that cannot be accepted; the message names the field and the fix."""


async def _form_body(request: Request) -> dict[str, str]:
    # python-multipart is not installed, so FastAPI's Form() cannot be used: an HTML form posts
    # application/x-www-form-urlencoded, which the standard library reads.
    body = (await request.body()).decode("utf-8", errors="replace")
    return {key: values[-1] for key, values in parse_qs(body, keep_blank_values=True).items()}


FormBody = Annotated[dict[str, str], Depends(_form_body)]


def _silence_matchers(alert: AlertState) -> str:
    """The matchers that silence exactly this alert's labels, one per line as the form takes them."""
    labels = {"service": alert.service, "rule": alert.rule, "operation": alert.operation, "signal": alert.signal}
    return "\n".join(f"{label}={value}" for label, value in labels.items() if value)


def _alert_view(alert: AlertState, channels: dict[str, str], time_range: TimeRange, now: float) -> dict[str, Any]:
    end = alert.resolved_at if alert.resolved_at is not None else now
    return {
        "alert": alert,
        "since": alert.firing_at if alert.state == "firing" and alert.firing_at is not None else alert.started_at,
        "lasted": duration_text(end - alert.started_at),
        "channels": [channels[g] for g in alert.group_id.split(",") if g in channels],
        "service_url": service_url_at(alert.service, alert.started_at - _MARGIN_S, end + _MARGIN_S),
        "silence_url": link("/alerts", time_range, matchers=_silence_matchers(alert)) + "#silence-form",
    }


def _silence_state(silence: Silence, now: float) -> str:
    if silence.active(now):
        return "active"
    return "pending" if silence.starts_at > now else "expired"


def _page(
    request: Request,
    reader: Reader,
    time_range: TimeRange,
    form: dict[str, str],
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    store = AlertStore(reader.client, reader.database)
    now = time.time()
    alerts = store.alerts(since=time_range.start_s)
    channels = {group.id: group.channel for group in store.groups(open_only=True)}
    active = sorted(
        (a for a in alerts if a.state in _STATE_ORDER), key=lambda a: (_STATE_ORDER[a.state], -a.started_at, a.key)
    )
    resolved = [
        a for a in alerts if a.state == "resolved" and a.resolved_at is not None and a.resolved_at <= time_range.end_s
    ]
    resolved.sort(key=lambda a: (-(a.resolved_at or 0.0), a.key))
    silences = [{"silence": s, "state": _silence_state(s, now)} for s in store.silences()]
    return render(
        request,
        "alerts.html",
        title="Alerts",
        time_range=time_range,
        status_code=status_code,
        active=[_alert_view(a, channels, time_range, now) for a in active],
        resolved=[_alert_view(a, channels, time_range, now) for a in resolved],
        silences=silences,
        # Signed in, the author defaults to the token's name.
        form={"duration": _DEFAULT_DURATION, "created_by": signed_in(request) or ""}
        | {k: v for k, v in form.items() if k in _FORM_FIELDS and (v or k != "created_by")},
        may_change=may_change(request),
        error=error,
    )


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    reader: Reader,
    time_range: Range,
    matchers: str = "",
    comment: str = "",
    duration: str = "",
    created_by: str = "",
) -> HTMLResponse:
    # The form's fields may come prefilled in the URL (a "silence this" link).
    prefill = {"matchers": matchers, "comment": comment, "duration": duration or _DEFAULT_DURATION}
    return _page(request, reader, time_range, prefill | {"created_by": created_by})


def _parse_matchers(text: str) -> dict[str, str]:
    matchers: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        label, sep, value = line.strip().partition("=")
        if not sep or not label.strip() or not value.strip():
            raise BadSilence(
                f"Matchers: {line.strip()!r} is not label=value; write one per line, e.g. service=payments"
            )
        matchers[label.strip()] = value.strip()
    if not matchers:
        raise BadSilence("Matchers: give at least one label=value, e.g. service=payments")
    return matchers


def _problem(error: dict[str, Any]) -> str:
    """One pydantic error of SilenceRequest in the form's words."""
    field = str(error["loc"][0]) if error["loc"] else "matchers"
    label = _FIELD_LABELS.get(field, field)
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    if isinstance(value, str) and not value.strip():
        return f"{label} is required"
    if isinstance(value, str) and len(value) <= 60:
        return f"{label} {value!r}: {message}"
    return f"{label}: {message}"


def _silence_request(form: dict[str, str]) -> SilenceRequest:
    matchers = _parse_matchers(form.get("matchers", ""))
    try:
        return SilenceRequest(
            matchers=matchers,
            author=form.get("created_by", "").strip(),
            comment=form.get("comment", "").strip(),
            duration=form.get("duration", "").strip(),
        )
    except ValidationError as exc:
        raise BadSilence("; ".join(_problem(dict(e)) for e in exc.errors())) from None


@router.post("/alerts/silences", response_class=HTMLResponse)
def create_silence_from_form(request: Request, reader: Reader, time_range: Range, form: FormBody) -> Response:
    try:
        body = _silence_request(form)
    except BadSilence as exc:
        return _page(request, reader, time_range, form, error=f"The silence was not created. {exc}.", status_code=400)
    create_silence(reader, body)
    # 303: the browser follows with a GET, so a reload does not post the form again.
    return RedirectResponse(link("/alerts", time_range), status_code=303)


@router.get("/alerts/silences")
def silences_redirect(time_range: Range) -> Response:
    """A range picked on a refused form's page (whose address is the form's) leads back to the alerts."""
    return RedirectResponse(link("/alerts", time_range), status_code=303)


@router.post("/alerts/silences/{silence_id}/expire", response_class=HTMLResponse)
def expire_silence_from_page(request: Request, reader: Reader, time_range: Range, silence_id: str) -> Response:
    try:
        expire_silence(reader, silence_id)
    except HTTPException as exc:
        if exc.status_code != 404:
            raise
        raise PageError(
            404, "Silence not found", f"There is no silence with id {silence_id!r}; the Alerts page lists them all."
        ) from None
    return RedirectResponse(link("/alerts", time_range), status_code=303)
