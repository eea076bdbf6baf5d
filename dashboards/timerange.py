"""The time range every page shows, carried in the URL so a link opens the same view.

Relative: ``?since=1h`` (the last hour, moving; pages may auto-refresh). Absolute:
``?start=...&end=...`` as unix seconds (what alert links carry) or ISO 8601 times
(what the custom-range form sends, ``2026-11-22T10:00``, read as UTC unless zoned).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from vigil.settings import parse_duration

__all__ = ["DEFAULT_SINCE", "MAX_SPAN_S", "PRESETS", "REFRESH_CHOICES", "BadTimeRange", "TimeRange", "parse_time_range"]

PRESETS: Final = ("5m", "15m", "1h", "3h", "6h", "12h", "24h", "2d", "7d")
DEFAULT_SINCE: Final = "1h"
# Auto-refresh choices for relative ranges; absolute ranges show fixed history and never refresh.
REFRESH_CHOICES: Final = ("off", "10s", "30s", "1m", "5m")
# The longest range a page reads: rollups keep 30 days by default.
MAX_SPAN_S: Final = 31 * 86400.0


class BadTimeRange(ValueError):
    """A range parameter is malformed; the message names it and the accepted forms."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    start_s: float
    end_s: float
    since: str | None  # the relative preset or duration, None for an absolute range
    refresh: str = "off"

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s

    @property
    def label(self) -> str:
        """How pages name the range: ``last 1h`` or ``2026-11-22 10:00 to 11:00 UTC``."""
        if self.since is not None:
            return f"last {self.since}"
        start, end = _utc(self.start_s), _utc(self.end_s)
        end_text = end.strftime("%H:%M") if start.date() == end.date() else end.strftime("%Y-%m-%d %H:%M")
        return f"{start:%Y-%m-%d %H:%M} to {end_text} UTC"

    @property
    def refresh_s(self) -> float | None:
        """Seconds between reloads, or None when the page should stay still."""
        if self.since is None or self.refresh == "off":
            return None
        return parse_duration(self.refresh)

    def params(self) -> dict[str, str]:
        """The query parameters that reproduce this range (and its refresh) in a link."""
        if self.since is not None:
            kept = {"since": self.since}
            if self.refresh != "off":
                kept["refresh"] = self.refresh
            return kept
        return {"start": str(int(self.start_s)), "end": str(int(self.end_s))}

    def input_value(self, which: str) -> str:
        """``start``/``end`` as the custom form's datetime-local value (UTC, minutes)."""
        return f"{_utc(self.start_s if which == 'start' else self.end_s):%Y-%m-%dT%H:%M}"


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _instant(name: str, value: str) -> float:
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadTimeRange(
            f"{name}={value!r} is not a time; give unix seconds (1763805600) or ISO 8601 (2026-11-22T10:00, UTC)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse_time_range(
    since: str | None = None,
    start: str | None = None,
    end: str | None = None,
    refresh: str | None = None,
    *,
    now: float | None = None,
) -> TimeRange:
    """The range a page's query asks for; `start` wins over `since`; nothing means the last hour.

    >>> parse_time_range("15m", now=1000.0)
    TimeRange(start_s=100.0, end_s=1000.0, since='15m', refresh='off')
    >>> parse_time_range(start="1970-01-01T00:10", end="1200", now=5000.0).seconds
    600.0
    """
    now = time.time() if now is None else now
    refresh_choice = refresh if refresh in REFRESH_CHOICES else "off"
    if start:
        start_s = _instant("start", start)
        end_s = _instant("end", end) if end else now
        if end_s <= start_s:
            raise BadTimeRange(f"the range ends ({end}) before it starts ({start}); swap start and end")
        if end_s - start_s > MAX_SPAN_S:
            raise BadTimeRange("the range is longer than 31 days; pick a shorter one")
        return TimeRange(start_s, end_s, None)
    label = since or DEFAULT_SINCE
    try:
        seconds = parse_duration(label)
    except ValueError:
        raise BadTimeRange(f"since={label!r} is not a duration; use one of {', '.join(PRESETS)} or e.g. 90m") from None
    if not 0 < seconds <= MAX_SPAN_S:
        raise BadTimeRange(f"since={label!r} is out of range; choose between 1s and 31d")
    return TimeRange(now - seconds, now, label, refresh_choice)
