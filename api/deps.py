"""Dependencies shared by routers: the read-only store and query-parameter parsing."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException, Request

from vigil.settings import parse_duration
from vigil.store.read import StoreReader

__all__ = ["TimeWindow", "get_reader", "invalid_parameter", "last_week", "parse_since", "time_window", "unix_seconds"]

# The longest window a query may ask for; longer scans belong to a batch job, not a page.
MAX_WINDOW_S = 90 * 86400


def get_reader(request: Request) -> StoreReader:
    reader: StoreReader = request.app.state.reader
    return reader


def invalid_parameter(name: str, value: Any, expected: str, where: str = "query") -> HTTPException:
    """A 422 in FastAPI's own error shape, naming the parameter and the expected form."""
    return HTTPException(
        status_code=422,
        detail=[
            {
                "type": "value_error",
                "loc": [where, name],
                "msg": f"{value!r} is not valid for {name}: expected {expected}",
                "input": value,
            }
        ],
    )


class TimeWindow:
    """[start, end] in Unix seconds, from a `since` duration ending now."""

    def __init__(self, start_s: float, end_s: float) -> None:
        self.start_s = start_s
        self.end_s = end_s


def parse_since(since: str) -> float:
    """Seconds in a `since` query parameter, or a 422 naming it."""
    try:
        seconds = parse_duration(since)
    except ValueError:
        raise invalid_parameter("since", since, "a duration such as 15m, 1h or 7d") from None
    if not 0 < seconds <= MAX_WINDOW_S:
        raise invalid_parameter("since", since, "a duration between 1s and 90d")
    return seconds


def time_window(since: str = "15m") -> TimeWindow:
    seconds = parse_since(since)
    now = time.time()
    return TimeWindow(now - seconds, now)


def last_week(since: str = "7d") -> TimeWindow:
    """A `since` window defaulting to a week: for the rarer events (deploys, canary analyses)."""
    return time_window(since)


def unix_seconds(value: datetime) -> float:
    """A request's time in unix seconds; one without a zone is UTC (pipelines run in every zone,
    Vigil speaks UTC)."""
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()
