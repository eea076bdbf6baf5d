"""Detectors on per-minute counts of log lines: one template's rate, and a template's first appearance.

Log templates are many (hundreds to thousands per service) and their counts are small, bursty
integers, so these detectors are cheap (a few numbers of state each) and judge counts as Poisson
counts against a slowly moving baseline rate, not as a continuous signal.

`TemplateRateDetector`, one per (service, template); observations ``{"t", "y": lines}`` with 0
for a minute without the template:

- Cold start: nothing fires before ``warmup`` minutes since the template was first counted.
- **Spike**: a minute with at least ``min_spike`` lines, at least ``spike_ratio`` x the baseline
  rate, and a Poisson tail probability under ``p_value`` given the baseline (at least
  ``floor_rate``, so a template that is usually absent is not "infinitely" surprising). Closes
  after ``close_after`` minutes back under the spike bar.
- **Vanish**: a steady template (present in at least ``steady_presence`` of recent minutes, at a
  baseline of at least ``min_vanish_rate`` lines/min) missing for as many minutes as make its
  absence a less than ``p_value`` chance under Poisson (at least ``min_vanish_minutes``). Its
  onset is the first silent minute; it closes as soon as the template is logged again.
- The baseline (an exponentially weighted mean with a half-life of ``half_life`` minutes) does
  not learn from minutes inside an excursion, so a long spike is not absorbed as normal; one that
  lasts ``absorb_after`` minutes is accepted as the new normal.

`NewPatternDetector`, one per (service, template) logged at WARN or above; observations
``{"t", "y": lines, "new": 1 if this is the template's first minute ever, "severity": max
severity number}``: a finding opens at the first minute of a template that is new and logged at
WARN (13) or above, and closes once the template has been quiet for ``close_after`` minutes.
"""

from __future__ import annotations

import math

from scipy.special import pdtrc

from vigil.detectors.base import Anomaly, Observation
from vigil.store.log_patterns_read import severity_text

__all__ = ["NewPatternDetector", "TemplateRateDetector"]

_WARN = 13


class TemplateRateDetector:
    """Spikes and disappearances of one log template's per-minute count; see the module docstring."""

    def __init__(
        self,
        *,
        warmup: int = 60,
        half_life: float = 60.0,
        p_value: float = 1e-6,
        spike_ratio: float = 5.0,
        min_spike: int = 20,
        floor_rate: float = 0.5,
        steady_presence: float = 0.8,
        min_vanish_rate: float = 1.0,
        min_vanish_minutes: int = 3,
        close_after: int = 3,
        absorb_after: int = 120,
    ) -> None:
        self.warmup = warmup
        self.alpha = 1.0 - 0.5 ** (1.0 / half_life)
        self.p_value = p_value
        self.spike_ratio = spike_ratio
        self.min_spike = min_spike
        self.floor_rate = floor_rate
        self.steady_presence = steady_presence
        self.min_vanish_rate = min_vanish_rate
        self.min_vanish_minutes = min_vanish_minutes
        self.close_after = close_after
        self.absorb_after = absorb_after
        self.seen = 0  # minutes since first counted
        self.rate = 0.0  # baseline lines per minute
        self.presence = 0.0  # weighted share of minutes with the template
        self.silent_since: float | None = None
        self.silent_minutes = 0
        self._open: Anomaly | None = None
        self._open_kind = ""
        self._open_minutes = 0
        self._calm_minutes = 0
        self._peak = 0.0

    def _spike_bar(self) -> float:
        """The smallest count that is a spike against the current baseline."""
        rate = max(self.rate, self.floor_rate)
        bar = max(float(self.min_spike), self.spike_ratio * rate)
        # Smallest c with P(X >= c) < p_value, found from the bar upwards (few steps: the tail is steep).
        c = math.ceil(bar)
        while pdtrc(c - 1, rate) >= self.p_value:
            c += max(1, int(math.sqrt(rate)))
        return float(c)

    def _vanish_minutes(self) -> int:
        # exp(-rate * k) < p_value  <=>  k > -ln(p_value) / rate
        return max(self.min_vanish_minutes, math.ceil(-math.log(self.p_value) / max(self.rate, 1e-9)))

    def score_one(self, x: Observation) -> float:
        if "y" not in x or self.seen < self.warmup:
            return 0.0
        y = x["y"]
        rate = max(self.rate, self.floor_rate)
        if y > rate:
            return float(min(1.0, -math.log10(max(pdtrc(math.ceil(y) - 1, rate), 1e-300)) / 12.0))
        return 0.0

    def learn_one(self, x: Observation) -> None:
        if "y" not in x:
            return
        t, y = x["t"], x["y"]
        if self.seen == 0 and y <= 0:
            return  # not counted yet: the series starts at its first line
        self.seen += 1
        judged = self.seen > self.warmup
        if judged:
            self._judge(t, y)
        if self._open is None or self._open_minutes >= self.absorb_after:
            self.rate += self.alpha * (y - self.rate) if self.seen > 1 else y - self.rate
            self.presence += self.alpha * ((1.0 if y > 0 else 0.0) - self.presence) if self.seen > 1 else 1.0
        if self._open is not None and self._open_minutes >= self.absorb_after:
            self._close()

    def _judge(self, t: float, y: float) -> None:
        if y > 0:
            self.silent_since, self.silent_minutes = None, 0
        else:
            self.silent_since = t if self.silent_since is None else self.silent_since
            self.silent_minutes += 1
        if self._open is not None:
            self._open_minutes += 1
            if self._open_kind == "vanish":
                if y > 0:
                    self._close()
                return
            self._peak = max(self._peak, y)
            self._calm_minutes = self._calm_minutes + 1 if y < self._spike_bar() else 0
            self._open = Anomaly(
                onset=self._open.onset,
                baseline=self._open.baseline,
                observed=self._peak,
                score=self._open.score,
                severity="warning",
                summary=f"{self._peak:g} lines in a minute against a usual {self._open.baseline:.2g}.",
            )
            if self._calm_minutes >= self.close_after:
                self._close()
            return
        if y > 0 and y >= self._spike_bar():
            self._open_kind, self._open_minutes, self._calm_minutes, self._peak = "spike", 0, 0, y
            self._open = Anomaly(
                onset=t,
                baseline=self.rate,
                observed=y,
                score=self.score_one({"t": t, "y": y}),
                severity="warning",
                summary=f"{y:g} lines in a minute against a usual {self.rate:.2g}.",
            )
            return
        steady = self.presence >= self.steady_presence and self.rate >= self.min_vanish_rate
        if y == 0 and steady and self.silent_minutes >= self._vanish_minutes() and self.silent_since is not None:
            self._open_kind, self._open_minutes = "vanish", 0
            self._open = Anomaly(
                onset=self.silent_since,
                baseline=self.rate,
                observed=0.0,
                score=1.0,
                severity="warning",
                summary=f"not logged for {self.silent_minutes} minutes; usually {self.rate:.2g} lines a minute.",
            )

    def _close(self) -> None:
        self._open, self._open_kind, self._open_minutes, self._calm_minutes, self._peak = None, "", 0, 0, 0.0

    def anomaly(self) -> Anomaly | None:
        return self._open


class NewPatternDetector:
    """The first appearance of a template logged at WARN or above; see the module docstring."""

    def __init__(self, *, close_after: int = 15) -> None:
        self.close_after = close_after
        self._open: Anomaly | None = None
        self._quiet = 0
        self._lines = 0.0

    def score_one(self, x: Observation) -> float:
        return 1.0 if x.get("new", 0.0) and x.get("severity", 0.0) >= _WARN else 0.0

    def learn_one(self, x: Observation) -> None:
        lines = x.get("y", 0.0)
        if self._open is None:
            if lines > 0 and self.score_one(x):
                self._lines = lines
                self._quiet = 0
                self._open = Anomaly(
                    onset=x["t"],
                    baseline=0.0,
                    observed=lines,
                    score=1.0,
                    severity="warning",
                    summary=f"first logged at {severity_text(int(x['severity']))} ({lines:g} lines).",
                )
            return
        if lines > 0:
            self._lines += lines
            self._quiet = 0
            self._open = Anomaly(
                onset=self._open.onset,
                baseline=0.0,
                observed=self._lines,
                score=1.0,
                severity="warning",
                summary=f"{self._open.summary.split(' (')[0]} ({self._lines:g} lines so far).",
            )
            return
        self._quiet += 1
        if self._quiet >= self.close_after:
            self._open = None

    def anomaly(self) -> Anomaly | None:
        return self._open
