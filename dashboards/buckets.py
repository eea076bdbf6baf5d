"""Time buckets for charts over a page's range: whole minutes (the rollups' grain), few enough
to draw, aligned to the epoch so the same instant always falls in the same bucket."""

from __future__ import annotations

from typing import Final

from vigil.dashboards.timerange import TimeRange

__all__ = ["bucket_seconds", "bucket_starts"]

# Steps a reader recognises; the rollups are per minute, so nothing finer.
_STEPS: Final = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_MAX_BUCKETS: Final = 90


def bucket_seconds(time_range: TimeRange) -> int:
    """The smallest step that draws the range in at most 90 buckets.

    >>> bucket_seconds(TimeRange(0, 3600, "1h")), bucket_seconds(TimeRange(0, 3 * 3600, "3h"))
    (60, 120)
    >>> bucket_seconds(TimeRange(0, 7 * 86400, "7d"))
    7200
    """
    for step in _STEPS:
        if time_range.seconds / step <= _MAX_BUCKETS:
            return step
    return _STEPS[-1]


def bucket_starts(time_range: TimeRange, step_s: int) -> list[int]:
    """The start (unix seconds) of every bucket that overlaps the range, oldest first.

    >>> bucket_starts(TimeRange(90, 250, None), 60)
    [60, 120, 180, 240]
    """
    first = int(time_range.start_s) // step_s * step_s
    return list(range(first, int(time_range.end_s) + 1, step_s))
