"""Replication lag: a replica that falls behind, keeps falling behind, or goes quiet.

Replication lag is a gauge in seconds per replica (``db.replication.lag_seconds``, MySQL's
``Seconds_Behind_Master``, ClickHouse's ``system.replicas.absolute_delay``), reported every few
seconds. A healthy replica sits in a small noise band (0-3 s, say) with the odd spike when a big
transaction lands. A stalled one (SQL thread stopped, a lock, a long ALTER) shows lag that grows
at up to 1 s per second, since the newest applied event keeps aging while the primary moves on.

The usual alert, ``lag > 30 for 1m``, waits for the lag to cross a fixed line and then for a
minute more, about 90 s after the stall began. This detector watches three conditions:

1. **growing** (warning): the lag has left the noise band learned for this replica (rolling p99
   plus a margin), keeps rising (Theil-Sen slope of the recent points >= `min_slope` s/s, most
   pairs of points rising, at least `min_rise_seconds` of rise), over at least three reports. A
   1 s/s stall reported every 10 s is flagged 20-35 s after it starts. Its onset is back-tracked
   to where the fitted line leaves the replica's median, bounded by the last normal report and the
   first abnormal one.
2. **over threshold** (critical): lag >= `threshold_seconds` on every report for `for_seconds`,
   whatever the replica's history, so one noisy report never fires.
3. **stopped reporting** (warning): no lag for `stale_seconds` (at least four report intervals)
   from a replica that had been reporting; a replica never heard from never fires.

A growing excursion that crosses the threshold escalates to critical and keeps its onset, so it
is one finding. An excursion closes once the lag has been back in the normal band, and under the
threshold, for `close_seconds`; a silence closes at the first report. The noise band learns only
reports that turned out normal: spikes that come back on their own are learned (they are this
replica's noise), excursions that became anomalies are not, and a new level that persists for
`adapt_seconds` without rising is accepted. The report interval is the median gap between
reports, so any interval from 1 s to a few minutes works. Cost per report: O(log window) for the
noise band plus O(window) while the lag is out of it.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from typing import Literal

from vigil.detectors.base import Anomaly, Observation, Severity

__all__ = ["ReplicationLagDetector"]

_Kind = Literal["growing", "over_threshold", "stopped"]

# Three reports are the fewest that tell growth from a spike that lasted two reports.
_MIN_GROWTH_POINTS = 3
# Theil-Sen is O(n^2) in the points kept: 24 covers 2 minutes at 5 s and 23 s at 1 s.
_MAX_GROWTH_POINTS = 24
# Share of point pairs that must rise (Kendall's tau >= 0.4): growth that is monotone-ish.
_MIN_RISING_PAIRS = 0.7
# Reports needed, and gaps remembered, before the report interval and a silence mean anything.
_MIN_REPORTS = 5
_INTERVAL_GAPS = 8
# A silence shorter than this many report intervals is a late report, not a stop.
_STALE_INTERVALS = 4.0
# The margin above p99 grows with the replica's own spread, so noisy replicas get a wider band.
_SPREAD_MARGIN = 0.5
_NOISE_QUANTILE = 0.99


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _median(values: list[float]) -> float:
    values = sorted(values)
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2.0


def _theil_sen(points: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    """Slope (s/s), intercept at the first point's time, share of rising pairs, time of the first point."""
    t0 = points[0][0]
    slopes: list[float] = []
    rising = 0
    for i, (ti, yi) in enumerate(points):
        for tj, yj in points[i + 1 :]:
            dt = tj - ti
            if dt <= 0:
                continue
            slopes.append((yj - yi) / dt)
            rising += yj > yi
    if not slopes:
        return 0.0, points[-1][1], 0.0, t0
    slope = _median(slopes)
    intercept = _median([y - slope * (t - t0) for t, y in points])
    return slope, intercept, rising / len(slopes), t0


class ReplicationLagDetector:
    """Growing, over-threshold and stopped replication lag of one replica; see the module docstring."""

    def __init__(
        self,
        *,
        threshold_seconds: float = 30.0,
        for_seconds: float = 20.0,
        stale_seconds: float = 120.0,
        min_slope: float = 0.5,
        min_rise_seconds: float = 10.0,
        growth_window_seconds: float = 120.0,
        margin_seconds: float = 2.0,
        close_seconds: float = 30.0,
        adapt_seconds: float = 600.0,
        baseline_points: int = 360,
        min_baseline_points: int = 30,
    ) -> None:
        self.threshold_seconds = threshold_seconds
        self.for_seconds = for_seconds
        self.stale_seconds = stale_seconds
        self.min_slope = min_slope
        self.min_rise_seconds = min_rise_seconds
        self.growth_window_seconds = growth_window_seconds
        self.margin_seconds = margin_seconds
        self.close_seconds = close_seconds
        self.adapt_seconds = adapt_seconds
        self.baseline_points = baseline_points
        self.min_baseline_points = min_baseline_points

        # Reporting.
        self._reports = 0
        self._last_y_t: float | None = None
        self._last_y = 0.0
        self._gaps: deque[float] = deque(maxlen=_INTERVAL_GAPS)
        self._silent_since: float | None = None  # first bucket without a report since the last one
        # Noise band: the last `baseline_points` normal reports, in arrival order and sorted.
        self._normal: deque[float] = deque()
        self._sorted: list[float] = []
        self._last_normal_t: float | None = None
        # The current run of reports out of the band (or over the threshold).
        self._run_start: float | None = None
        self._run: deque[tuple[float, float]] = deque(maxlen=_MAX_GROWTH_POINTS)
        self._pending: list[float] = []  # run values to learn if the run turns out to be noise
        self._over_since: float | None = None  # first report of the current run >= threshold
        # The open excursion.
        self._kind: _Kind | None = None
        self._onset = 0.0
        self._severity: Severity = "warning"
        self._upper_at_open = math.inf
        self._peak = 0.0
        self._recovered_since: float | None = None
        self._anomaly: Anomaly | None = None

    # -- river protocol ---------------------------------------------------------------------------

    def score_one(self, x: Observation) -> float:
        """0 in the noise band, rising to 1 at the threshold; a silence scores its share of the stale window."""
        t = float(x["t"])
        y = self._value(x)
        if y is None:
            if self._last_y_t is None or self._reports < _MIN_REPORTS:
                return 0.0
            return min(1.0, max(0.0, (t - self._last_y_t) / self._stale_window()))
        return self._level_score(y, self._upper())

    def learn_one(self, x: Observation) -> None:
        t = float(x["t"])
        y = self._value(x)
        if y is None:
            self._learn_silence(t)
        else:
            self._learn_report(t, y)
        self._anomaly = self._build(t)

    def anomaly(self) -> Anomaly | None:
        return self._anomaly

    # -- learning ---------------------------------------------------------------------------------

    @staticmethod
    def _value(x: Observation) -> float | None:
        y = x.get("y")
        if y is None or not math.isfinite(y):
            return None
        return float(y)

    def _learn_silence(self, t: float) -> None:
        if self._last_y_t is None:
            return
        if self._silent_since is None:
            self._silent_since = t
        # An open excursion stays open through a silence: its lag was never seen to recover.
        if self._kind is None and self._reports >= _MIN_REPORTS and t - self._last_y_t >= self._stale_window():
            self._open("stopped", self._silent_since, "warning")

    def _learn_report(self, t: float, y: float) -> None:
        if self._last_y_t is not None and t > self._last_y_t:
            self._gaps.append(t - self._last_y_t)
        self._last_y_t = t
        self._last_y = y
        self._reports += 1
        self._silent_since = None
        if self._kind == "stopped":
            self._close()

        if y >= self.threshold_seconds:
            if self._over_since is None:
                self._over_since = t
        else:
            self._over_since = None
        over = self._over_since is not None and t - self._over_since >= self.for_seconds

        if self._kind is not None:
            upper = self._upper_at_open
            if y >= self.threshold_seconds or y > upper:
                self._recovered_since = None
                self._run.append((t, y))
                self._peak = max(self._peak, y)
                if over and self._kind == "growing":
                    self._kind = "over_threshold"
                    self._severity = "critical"
            else:
                if self._recovered_since is None:
                    self._recovered_since = t
                if t - self._recovered_since >= self.close_seconds:
                    self._close()
                    self._last_normal_t = t
            return

        upper_or_none = self._upper()
        upper = math.inf if upper_or_none is None else upper_or_none
        if y < self.threshold_seconds and y <= upper:
            # Back in the band without becoming an anomaly: the run was this replica's noise.
            for value in self._pending:
                self._learn_normal(value)
            self._end_run()
            self._learn_normal(y)
            self._last_normal_t = t
            return

        if self._run_start is None:
            self._run_start = t
        self._run.append((t, y))
        self._pending.append(y)
        if over:
            self._open("over_threshold", self._run_start, "critical", upper)
            return
        onset = self._growth_onset(t, upper_or_none)
        if onset is not None:
            self._open("growing", onset, "warning", upper)
            return
        if t - self._run_start >= self.adapt_seconds:
            # A level held this long without growing is the replica's new normal.
            for value in self._pending:
                self._learn_normal(value)
            self._pending.clear()

    def _learn_normal(self, y: float) -> None:
        # Lag over the threshold is never normal, whatever came before.
        if y >= self.threshold_seconds:
            return
        if len(self._normal) >= self.baseline_points:
            old = self._normal.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._normal.append(y)
        bisect.insort(self._sorted, y)

    def _end_run(self) -> None:
        self._run_start = None
        self._run.clear()
        self._pending.clear()

    def _open(self, kind: _Kind, onset: float, severity: Severity, upper: float = math.inf) -> None:
        self._kind = kind
        self._onset = onset
        self._severity = severity
        self._upper_at_open = upper
        self._peak = self._last_y
        self._recovered_since = None
        # Reports of an anomaly must not widen the band it is judged against.
        self._pending.clear()

    def _close(self) -> None:
        self._kind = None
        self._recovered_since = None
        self._upper_at_open = math.inf
        self._end_run()

    # -- judging ----------------------------------------------------------------------------------

    def _interval(self) -> float | None:
        return _median(list(self._gaps)) if self._gaps else None

    def _stale_window(self) -> float:
        interval = self._interval()
        return self.stale_seconds if interval is None else max(self.stale_seconds, _STALE_INTERVALS * interval)

    def _baseline(self) -> float:
        return self._sorted[len(self._sorted) // 2] if self._sorted else 0.0

    def _upper(self) -> float | None:
        """Top of the noise band, or None until enough normal reports were seen."""
        n = len(self._sorted)
        if n < self.min_baseline_points:
            return None
        p99 = self._sorted[min(n - 1, int(_NOISE_QUANTILE * n))]
        return p99 + max(self.margin_seconds, _SPREAD_MARGIN * (p99 - self._baseline()))

    def _level_score(self, y: float, upper: float | None) -> float:
        if y >= self.threshold_seconds:
            return 1.0
        if upper is None or y <= upper:
            return 0.0
        return min(1.0, (y - upper) / max(self.threshold_seconds - upper, 1e-9))

    def _growth_onset(self, t: float, upper: float | None) -> float | None:
        """When the growth started, if the run is growth; else None."""
        if upper is None or self._run_start is None:
            return None
        interval = self._interval() or 0.0
        window = max(self.growth_window_seconds, (_MIN_GROWTH_POINTS - 1) * interval)
        points = [p for p in self._run if p[0] >= t - window]
        if len(points) < _MIN_GROWTH_POINTS:
            return None
        slope, intercept, rising, t0 = _theil_sen(points)
        if slope < self.min_slope or rising < _MIN_RISING_PAIRS:
            return None
        if slope * (points[-1][0] - t0) < self.min_rise_seconds:
            return None
        # Back-track the fitted line to the replica's median, within the last normal and first abnormal report.
        crossing = t0 + (self._baseline() - intercept) / slope
        earliest = self._run_start if self._last_normal_t is None else self._last_normal_t
        return min(max(crossing, earliest), self._run_start)

    def _rate(self) -> float:
        points = list(self._run)
        return _theil_sen(points[-8:])[0] if len(points) >= 2 else 0.0

    def _build(self, t: float) -> Anomaly | None:
        if self._kind is None:
            return None
        baseline = self._baseline()
        since = f"since {_utc(self._onset)} ({t - self._onset:.0f} s ago)"
        if self._kind == "stopped":
            last = self._last_y_t if self._last_y_t is not None else self._onset
            silence = t - last
            interval = self._interval()
            expected = f"expected every {interval:.0f} s" if interval is not None else "expected regularly"
            return Anomaly(
                onset=self._onset,
                baseline=baseline,
                observed=self._last_y,
                score=min(1.0, silence / (2.0 * self._stale_window())),
                severity="warning",
                summary=(
                    f"Replica stopped reporting replication lag: nothing for {silence:.0f} s ({expected}), "
                    f"last lag {self._last_y:.1f} s at {_utc(last)}; silent {since}."
                ),
            )
        lag = self._last_y
        rate = self._rate()
        band = f"normal <= {self._upper_at_open:.1f} s" if math.isfinite(self._upper_at_open) else "no baseline yet"
        trend = f"{'rising' if rate >= 0 else 'falling'} {abs(rate):.2f} s/s"
        if self._recovered_since is not None:
            state = f"back to {lag:.1f} s (closing after {self.close_seconds:.0f} s in the band)"
        else:
            state = f"now {lag:.1f} s, {trend}"
        if self._kind == "over_threshold":
            summary = (
                f"Replication lag over threshold (>= {self.threshold_seconds:.0f} s for {self.for_seconds:.0f} s): "
                f"{state}, peak {self._peak:.1f} s ({band}); lagging {since}."
            )
            score = 1.0
        else:
            summary = (
                f"Replication lag growing before the {self.threshold_seconds:.0f} s threshold: {state}, "
                f"peak {self._peak:.1f} s ({band}); growing {since}."
            )
            score = max(0.5, self._level_score(self._peak, self._upper_at_open))
        return Anomaly(
            onset=self._onset, baseline=baseline, observed=lag, score=score, severity=self._severity, summary=summary
        )
