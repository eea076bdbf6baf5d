"""Log search: newest first, by service, minimum severity, text, trace id and time."""

from __future__ import annotations

import re
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from vigil.api.deps import TimeWindow, get_reader, invalid_parameter, parse_since, time_window
from vigil.store.log_patterns_read import SEVERITY_NUMBERS, LogPattern
from vigil.store.read import LogRecord, StoreReader

router = APIRouter(prefix="/api/v1", tags=["logs"])

# The first severity number of each OTLP severity range (logs.proto SeverityNumber).
# "warning" as well as OTLP's "WARN": both spellings are common in logging libraries.
_SEVERITY_ALIASES = {"WARNING": "WARN"}
_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
_DEFAULT_SINCE = "15m"


def _min_severity(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    name = _SEVERITY_ALIASES.get(value.upper(), value.upper())
    if name in SEVERITY_NUMBERS:
        return SEVERITY_NUMBERS[name]
    if value.isdigit() and 1 <= int(value) <= 24:
        return int(value)
    raise invalid_parameter("severity", value, "trace, debug, info, warn, error, fatal, or a number from 1 to 24")


@router.get("/logs", response_model=list[LogRecord])
def search_logs(
    reader: Annotated[StoreReader, Depends(get_reader)],
    service: str | None = None,
    severity: str | None = None,
    q: str | None = None,
    trace_id: str | None = None,
    template_id: Annotated[int | None, Query(ge=0, lt=2**64)] = None,
    since: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[LogRecord]:
    """Newest log records first. `severity` is a minimum (`warn` includes errors); `q` matches
    the body anywhere, case-insensitively; `template_id` keeps one pattern's records (see
    `/logs/patterns`); `since` defaults to 15m, except that a `trace_id` alone searches all
    retained logs, so a trace's logs are found however old it is."""
    if trace_id is not None and not _TRACE_ID.match(trace_id):
        raise invalid_parameter("trace_id", trace_id, "32 hexadecimal characters")
    window_s = parse_since(since or _DEFAULT_SINCE) if since is not None or trace_id is None else None
    now = time.time()
    return reader.logs(
        start_s=now - window_s if window_s is not None else None,
        end_s=now if window_s is not None else None,
        service=service,
        min_severity=_min_severity(severity),
        text=q,
        trace_id=trace_id.lower() if trace_id else None,
        template_id=template_id,
        limit=limit,
    )


@router.get("/logs/patterns", response_model=list[LogPattern])
def log_patterns(
    reader: Annotated[StoreReader, Depends(get_reader)],
    window: Annotated[TimeWindow, Depends(time_window)],
    service: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[LogPattern]:
    """Log templates per service in the window (`since`, default 15m), most frequent first.

    A template is a log message with its variable parts (numbers, ids, addresses, paths...)
    replaced by placeholders such as `<NUM>` and `<*>`. `count`, `warnings` (WARN) and `errors`
    (ERROR and FATAL) are in the window; `first_seen` and `last_seen` are unix seconds, the first
    over all retained logs, so `new` says the pattern first appeared in the window; `sample` is
    one recent body; `severity_max` the most severe level it was logged at."""
    return reader.log_patterns(start_s=window.start_s, end_s=window.end_s, service=service, limit=limit)
