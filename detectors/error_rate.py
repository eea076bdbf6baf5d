"""Error-rate regressions as a Bernoulli CUSUM on request counts, not on a noisy ratio.

A minute's error *ratio* is meaningless at low volume: 2 errors in 20 requests is 10%, while
the service's true rate may be 1%. So this detector sees counts, ``{"t", "y": errors, "n":
requests}``, and accumulates the log-likelihood ratio of "the rate rose to p1" against "the
rate is still the baseline p0" over every request (Page's CUSUM for Bernoulli trials). It fires
when the evidence passes `h`, which takes a few very bad minutes or many mildly bad ones, and
dates the onset to where the evidence last stood at zero.

Finding rules: no finding before `warmup_requests` requests and `warmup_buckets` minutes have
set the baseline (cold start); the rise must be at least `min_increase` in absolute terms and
`min_ratio` times the baseline; the finding closes when the evidence has drained back to zero.
The baseline learns only while no excursion is in progress, with a half-life of about a day.
"""

from __future__ import annotations

import math

from vigil.detectors.base import Anomaly, Observation, Severity

__all__ = ["ErrorRateDetector"]


class ErrorRateDetector:
    def __init__(
        self,
        *,
        h: float = 10.0,
        min_increase: float = 0.02,
        min_ratio: float = 3.0,
        warmup_requests: int = 500,
        warmup_buckets: int = 30,
        half_life_buckets: float = 1440.0,
        noun: str = "requests",
    ) -> None:
        self.noun = noun  # what "n" counts, for the summary
        self.h = h
        self.min_increase = min_increase
        self.min_ratio = min_ratio
        self.warmup_requests = warmup_requests
        self.warmup_buckets = warmup_buckets
        self.decay = 0.5 ** (1.0 / half_life_buckets)
        self.errors = 0.0  # decayed baseline counts
        self.requests = 0.0
        self.buckets = 0
        self.total_requests = 0
        self.s = 0.0  # CUSUM statistic
        self.s_zero_at: float | None = None  # start of the bucket after which S last left zero
        self.alarm_onset: float | None = None
        self.since_errors = 0.0  # counts since the excursion's onset, for `observed`
        self.since_requests = 0.0

    @property
    def p0(self) -> float:
        # A prior of one error in 200 requests keeps a spotless service from having p0 = 0.
        return (self.errors + 1.0) / (self.requests + 200.0)

    @property
    def p1(self) -> float:
        return min(max(self.p0 * self.min_ratio, self.p0 + self.min_increase), 0.999)

    def _increment(self, errors: float, requests: float) -> float:
        p0, p1 = self.p0, self.p1
        return errors * math.log(p1 / p0) + (requests - errors) * math.log((1 - p1) / (1 - p0))

    def score_one(self, x: Observation) -> float:
        if "y" not in x or self.total_requests < self.warmup_requests:
            return 0.0
        s = max(0.0, self.s + self._increment(x["y"], x.get("n", 0.0)))
        return min(s / self.h, 1.0)

    def learn_one(self, x: Observation) -> None:
        if "y" not in x:
            return
        errors, requests = x["y"], x.get("n", 0.0)
        if requests <= 0:
            return
        if self.total_requests < self.warmup_requests or self.buckets < self.warmup_buckets:
            # Warm-up only learns the baseline: evidence gathered against the prior would leave a
            # service whose normal rate is high (30% failed logins) in alarm, and its baseline
            # frozen, as soon as it warmed up.
            self.errors = self.errors * self.decay + errors
            self.requests = self.requests * self.decay + requests
            self.buckets += 1
            self.total_requests += int(requests)
            return
        before = self.s
        self.s = max(0.0, self.s + self._increment(errors, requests))
        if before == 0.0 and self.s > 0.0:
            self.s_zero_at = x["t"]
            self.since_errors = self.since_requests = 0.0
        if self.s > 0.0:
            self.since_errors += errors
            self.since_requests += requests
        # Cap the evidence so that a long incident drains within minutes once it is over.
        self.s = min(self.s, 3 * self.h)
        if self.alarm_onset is None and self.s >= self.h:
            self.alarm_onset = self.s_zero_at
        elif self.alarm_onset is not None and self.s == 0.0:
            self.alarm_onset = None
        if self.alarm_onset is None and self.s < self.h / 2:
            self.errors = self.errors * self.decay + errors
            self.requests = self.requests * self.decay + requests
        self.buckets += 1
        self.total_requests += int(requests)

    def anomaly(self) -> Anomaly | None:
        if self.alarm_onset is None:
            return None
        observed = self.since_errors / max(self.since_requests, 1.0)
        baseline = self.p0
        severity: Severity = "critical" if observed >= max(10 * baseline, 0.1) else "warning"
        return Anomaly(
            onset=self.alarm_onset,
            baseline=baseline,
            observed=observed,
            score=min(self.s / self.h, 1.0),
            severity=severity,
            summary=(
                f"Error rate rose to {observed:.1%} of {int(self.since_requests)} {getattr(self, 'noun', 'requests')} "
                f"from a baseline of {baseline:.2%}."
            ),
        )
