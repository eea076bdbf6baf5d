"""Anomaly likelihood: how unusual the recent raw anomaly scores of one series are, for that series.

A predictive model's raw anomaly score (0..1, how badly it predicted a point) is not comparable
across series: a bursty series mispredicts by a lot every hour, a quiet one never does. Numenta's
anomaly likelihood (Ahmad, Lavin, Purdy, Agha: "Unsupervised real-time anomaly detection for
streaming data", Neurocomputing 2017) turns it into a per-series probability:

* the short-term mean of the raw scores (the last ``short`` points) is what is judged, so one
  mispredicted point on a bursty series is not news, but a run of them is;
* its distribution is a Gaussian of those short-term means over a long history (exponentially
  weighted over about ``horizon`` points, so a series' character may change slowly), with a floor on
  the mean and the standard deviation so that a series that is perfectly predicted does not turn
  every tiny error into a certainty;
* the likelihood is the upper tail probability of the current short-term mean under that Gaussian,
  reported on Numenta's log scale: ``log(p) / log(1e-10)``, 0.5 being a tail probability of 1e-5.

Rules: `update` judges a raw score against the history before it, then learns it (causal). The
state is a few floats and the last ``short`` raw scores, so it pickles small.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["AnomalyLikelihood", "log_likelihood"]

_LOG_EPSILON = math.log(1e-10)


def log_likelihood(tail: float) -> float:
    """Numenta's log scale of a tail probability: 0 for p = 1, 0.5 for p = 1e-5, about 1 for p = 1e-10."""
    return min(1.0, max(0.0, math.log(tail + 1e-10) / _LOG_EPSILON))


class AnomalyLikelihood:
    """Streaming anomaly likelihood of raw scores in 0..1 (see the module docstring).

    short: raw scores averaged into the judged short-term mean.
    horizon: points of history weighed (exponentially) in the Gaussian of short-term means.
    min_mean, min_std: floors of that Gaussian (Numenta's 0.03 and sqrt(0.0003)).
    learn: short-term means needed before anything is judged (a tail probability of 1 until then).
    """

    def __init__(
        self,
        *,
        short: int = 10,
        horizon: int = 8640,
        min_mean: float = 0.03,
        min_std: float = math.sqrt(0.0003),
        learn: int = 100,
    ) -> None:
        self.short = short
        self.horizon = horizon
        self.min_mean = min_mean
        self.min_std = min_std
        self.learn = learn
        self._recent: deque[float] = deque(maxlen=short)
        self._n = 0  # short-term means learnt
        self._mean = 0.0
        self._var = 0.0

    def _next_mean(self, raw: float) -> float:
        recent = self._recent
        n = len(recent)
        if n == self.short:
            return (sum(recent) - recent[0] + raw) / n
        return (sum(recent) + raw) / (n + 1)

    def tail(self, raw: float) -> float:
        """Upper tail probability of the short-term mean if `raw` came next; 1.0 while learning."""
        if self._n < self.learn:
            return 1.0
        mean = max(self._mean, self.min_mean)
        std = max(math.sqrt(self._var), self.min_std)
        z = (self._next_mean(raw) - mean) / std
        return 0.5 * math.erfc(z / math.sqrt(2.0)) if z > 0.0 else 1.0

    def learn_one(self, raw: float) -> None:
        m = self._next_mean(raw)
        self._recent.append(raw)
        # Plain mean and variance until the horizon is full, exponentially weighted after it.
        self._n += 1
        w = 1.0 / min(self._n, self.horizon)
        d = m - self._mean
        self._mean += w * d
        self._var = (1.0 - w) * (self._var + w * d * d)

    def update(self, raw: float) -> float:
        """The tail probability of `raw` (see `tail`), then learn it."""
        p = self.tail(raw)
        self.learn_one(raw)
        return p
