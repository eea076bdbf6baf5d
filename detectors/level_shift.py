"""Level shifts of one service series: a step in latency, error rate or throughput, reported once.

A service regression shows as a step: p95 latency jumps from 80 ms to 200 ms and stays there, the
error rate climbs from 0.1% to 3%. Paging every minute of it helps nobody; the finding should open
once, say since when, and close when the series is back to normal.

The detector models "normal" as a baseline prediction plus a robust noise scale:

* the flat baseline is the rolling median of the last ``baseline_window`` buckets, its scale the
  rolling median absolute residual (river's ``RollingQuantile``), so a few spikes move neither;
* seasonal baselines take over once they have two days (weeks) of history *and* predict clearly
  better than the flat median: time-of-day (time-of-week) profiles predicting each bucket by the
  median of the same bucket and its neighbours on the last 5 days (3 weeks). A daily rush hour is
  then normal, and a flat day where the rush should be is not. The bucket spacing (1 minute,
  5 minutes, ...) comes from the timestamps ``"t"``.

Each point's residual in noise units ``z`` feeds two tests: a single large ``z`` (spike or abrupt
step) and two-sided CUSUM of ``z`` (a smaller but sustained shift). The stronger of the two,
relative to its alarm level, is then divided by how strong this series' everyday surprises are
(``calibration`` x their running 99th percentile, when above 1): a bursty series must outdo its
usual bursts. The result is squashed into 0..1, 0.5 being exactly at the alarm level.

Findings:

* Cold start: no anomaly before ``warmup`` buckets with a value have been learnt; until then
  there is no baseline to compare with, however wild the first values are.
* A finding opens when the score reaches ``threshold`` in a watched ``direction`` and the effect
  clears ``min_effect_abs`` and ``min_effect_rel`` x |baseline| (so tiny but statistically
  significant wiggles on very quiet series stay quiet). Its onset is where the CUSUM run that led to
  the alarm started (backtracking), so a step is dated to its first bucket, not to when it became
  certain.
* While open, `anomaly()` keeps the same onset and pre-excursion baseline; no second finding opens.
* It closes when ``close_after`` consecutive buckets are back within the alarm band of the
  pre-excursion baseline (nearer it than halfway to the excursion's median level), or, if the
  series never comes back, after ``absorb_after`` buckets: by
  then the rolling baseline has moved to the new level, which is accepted as the new normal.

Empty buckets (no ``"y"``) are skipped: they neither teach the model nor count as a return to normal.
"""

from __future__ import annotations

import math
from typing import Literal

from river import stats

from vigil.detectors.base import Anomaly, Observation, Severity

__all__ = ["LevelShiftDetector"]

Direction = Literal["up", "down", "both"]

_DAY = 86400.0
_WEEK = 7 * _DAY
_MAD_TO_SIGMA = 1.4826


def _squash(e: float) -> float:
    """Map strength (1.0 = at the alarm level) to 0..1 with 0.5 at the alarm level.

    Logarithmic, so strengths of 10 and 10**6 (a flat series that moves) still rank apart.
    """
    lg = math.log1p(e)
    return lg / (lg + math.log(2.0))


class _Profile:
    """A seasonal baseline: the same bucket (and its two neighbours) in each of the last few periods.

    The prediction is the median of those values, so one bad day does not become tomorrow's normal
    and a bucket that drifts by one slot between periods still finds its peers.
    """

    def __init__(self, period: float, slot: float, keep: int) -> None:
        self.period = period
        self.slot = slot
        self.slots = max(1, round(period / slot))
        self.keep = keep
        self.values: dict[int, list[float]] = {}
        self.first_t: float | None = None
        self.residual = stats.RollingQuantile(0.5, 2000)  # |y - prediction|: the profile's noise
        self.error = stats.EWMean(0.01)  # mean |y - prediction|, big misses included: picks the model

    def _index(self, t: float) -> int:
        return int((t % self.period) // self.slot) % self.slots

    def ready(self, t: float, periods: float) -> bool:
        return self.first_t is not None and t - self.first_t >= periods * self.period

    def predict(self, t: float) -> float | None:
        i = self._index(t)
        peers: list[float] = []
        for j in (i - 1, i, i + 1):
            peers.extend(self.values.get(j % self.slots, ()))
        if len(peers) < 3:
            return None
        peers.sort()
        n = len(peers)
        return peers[n // 2] if n % 2 else 0.5 * (peers[n // 2 - 1] + peers[n // 2])

    def learn(self, t: float, y: float) -> None:
        if self.first_t is None:
            self.first_t = t
        kept = self.values.setdefault(self._index(t), [])
        kept.append(y)
        if len(kept) > self.keep:
            del kept[0]


class LevelShiftDetector:
    """Streaming step-change detector for per-bucket service metrics (river protocol, see `base`).

    direction: which excursions count: "up" for latency and error rate, "both" for throughput.
    threshold: score (0..1) at which a finding opens; 0.5 is the alarm level of the tests below.
    warmup: buckets with a value before any anomaly (cold start).
    baseline_window: buckets in the rolling median baseline; also sets how fast a new level is learnt.
    spike_z: |z| that alarms on one bucket.
    cusum_k, cusum_h: CUSUM allowance and decision level, in noise units.
    min_effect_abs, min_effect_rel: smallest |observed - baseline| worth a finding, absolute and
        relative to |baseline|.
    close_after: consecutive in-band buckets that end a finding.
    absorb_after: buckets after which a level that persists is the new normal, closing the finding.
    seasonal: learn time-of-day and time-of-week profiles.
    calibration: how far past its usual surprises (99th percentile) a series must go to alarm.
    """

    def __init__(
        self,
        *,
        direction: Direction = "both",
        threshold: float = 0.5,
        warmup: int = 100,
        baseline_window: int = 600,
        spike_z: float = 6.0,
        cusum_k: float = 1.0,
        cusum_h: float = 12.0,
        min_effect_abs: float = 0.0,
        min_effect_rel: float = 0.05,
        close_after: int = 10,
        absorb_after: int = 600,
        seasonal: bool = True,
        calibration: float = 1.5,
    ) -> None:
        if direction not in ("up", "down", "both"):
            raise ValueError(f"direction must be up, down or both, not {direction!r}")
        self.direction: Direction = direction
        self.threshold = threshold
        self.warmup = warmup
        self.baseline_window = baseline_window
        self.spike_z = spike_z
        self.cusum_k = cusum_k
        self.cusum_h = cusum_h
        self.min_effect_abs = min_effect_abs
        self.min_effect_rel = min_effect_rel
        self.close_after = close_after
        self.absorb_after = absorb_after
        self.seasonal = seasonal
        self.calibration = calibration

        self._n = 0  # buckets with a value learnt
        self._last_t: float | None = None
        self._dt: float | None = None  # bucket spacing, seconds
        self._gaps: list[float] = []
        self._median = stats.RollingQuantile(0.5, baseline_window)
        self._flat_residual = stats.RollingQuantile(0.5, baseline_window)
        self._flat_error = stats.EWMean(0.01)
        self._daily: _Profile | None = None
        self._weekly: _Profile | None = None
        self._surprise = stats.Quantile(0.99)  # the strength of everyday points (no finding open)
        # CUSUM statistics, and when each run last left zero (the onset if it alarms).
        self._up = 0.0
        self._down = 0.0
        self._up_start: float | None = None
        self._down_start: float | None = None
        # The open finding, if any.
        self._open: Anomaly | None = None
        self._sign = 0
        self._m0 = 0.0  # baseline and scale frozen when the finding opened
        self._s0 = 1.0
        self._since_open: list[float] = []
        self._in_band = 0

    # -- model -----------------------------------------------------------------------------------

    def _spacing(self, t: float) -> None:
        if self._last_t is not None and t > self._last_t and self._dt is None:
            self._gaps.append(t - self._last_t)
            if len(self._gaps) >= 5:
                # The smallest recent gap is the bucket width; larger ones are empty buckets.
                self._dt = min(self._gaps)
                if self.seasonal and self._dt <= _DAY / 12:
                    self._daily = _Profile(_DAY, self._dt, 5)
                    self._weekly = _Profile(_WEEK, self._dt, 3)
        self._last_t = t

    def _baseline(self, t: float) -> tuple[float, float]:
        """Prediction and noise scale (sigma) for a bucket at `t`, from the best ready model."""
        flat = self._median.get() or 0.0
        best_pred, best_mad, best_error = flat, self._flat_residual.get() or 0.0, self._flat_error.get()
        for profile, periods in ((self._daily, 2.0), (self._weekly, 2.0)):
            if profile is None or not profile.ready(t, periods):
                continue
            pred = profile.predict(t)
            mad = profile.residual.get()
            error = profile.error.get()
            # A profile must beat the flat median clearly, or its extra freedom only adds noise.
            if pred is not None and mad is not None and error < 0.8 * best_error:
                best_pred, best_mad, best_error = pred, mad, error
        floor = 1e-9 + 1e-6 * abs(best_pred)
        # The mean error keeps the scale honest on series that are mostly constant (MAD = 0) but move.
        return best_pred, max(best_mad * _MAD_TO_SIGMA, 0.5 * best_error, floor)

    def _z(self, x: Observation) -> tuple[float, float, float] | None:
        raw = x.get("y")
        if raw is None or self._n == 0:
            return None
        y = float(raw)
        pred, scale = self._baseline(x["t"])
        return (y - pred) / scale, pred, scale

    def _strength(self, z: float, up: float, down: float) -> tuple[float, int]:
        """How far past its alarm level the strongest watched test is (1.0 = at the level), and its sign."""
        best, sign = 0.0, 0
        if self.direction in ("up", "both"):
            e = max(z / self.spike_z, up / self.cusum_h)
            if e > best:
                best, sign = e, 1
        if self.direction in ("down", "both"):
            e = max(-z / self.spike_z, down / self.cusum_h)
            if e > best:
                best, sign = e, -1
        return best, sign

    def _usual(self) -> float:
        """How strong this series' everyday surprises are: a bursty series must outdo its usual bursts."""
        q = self._surprise.get()
        return max(1.0, self.calibration * q) if q is not None else 1.0

    def _cusum(self, z: float) -> tuple[float, float]:
        zc = max(-4.0 * self.spike_z, min(4.0 * self.spike_z, z))
        return max(0.0, self._up + zc - self.cusum_k), max(0.0, self._down - zc - self.cusum_k)

    # -- river protocol ----------------------------------------------------------------------------

    def score_one(self, x: Observation) -> float:
        if self._n < self.warmup:
            return 0.0
        found = self._z(x)
        if found is None:
            return 0.0
        z = found[0]
        up, down = self._cusum(z)
        e, _ = self._strength(z, up, down)
        return _squash(e / self._usual())

    def learn_one(self, x: Observation) -> None:
        t = float(x["t"])
        self._spacing(t)
        y = x.get("y")
        if y is None:
            return
        found = self._z(x)
        y = float(y)
        if found is not None and self._n >= self.warmup:
            z, pred, scale = found
            self._step(t, y, z, pred, scale)
        self._learn_models(t, y)
        self._n += 1

    def anomaly(self) -> Anomaly | None:
        return self._open

    # -- findings ----------------------------------------------------------------------------------

    def _step(self, t: float, y: float, z: float, pred: float, scale: float) -> None:
        up, down = self._cusum(z)
        if up > 0.0 and self._up == 0.0:
            self._up_start = t
        if down > 0.0 and self._down == 0.0:
            self._down_start = t
        self._up, self._down = up, down

        if self._open is not None:
            self._track(t, y)
            return
        raw, sign = self._strength(z, up, down)
        e = raw / self._usual()
        self._surprise.update(raw)
        score = _squash(e)
        if sign == 0 or score < self.threshold:
            return
        if abs(y - pred) < max(self.min_effect_abs, self.min_effect_rel * abs(pred)):
            return
        start = self._up_start if sign > 0 else self._down_start
        onset = t if start is None else min(start, t)
        self._sign, self._m0, self._s0 = sign, pred, scale
        self._since_open = [y]
        self._in_band = 0
        self._open = self._describe(onset, score)

    def _track(self, t: float, y: float) -> None:
        assert self._open is not None
        self._since_open.append(y)
        # Back means nearer the old baseline than halfway to the excursion's level (its median so far).
        effect = abs(self._open.observed - self._m0)
        band = max(0.5 * effect, self._s0, self.min_effect_abs, self.min_effect_rel * abs(self._m0))
        self._in_band = self._in_band + 1 if (y - self._m0) * self._sign < band else 0
        if self._in_band >= self.close_after or len(self._since_open) >= self.absorb_after:
            self._close()
            return
        self._open = self._describe(self._open.onset, self._open.score)

    def _close(self) -> None:
        self._open = None
        self._since_open = []
        self._up = self._down = 0.0
        self._up_start = self._down_start = None

    def _describe(self, onset: float, score: float) -> Anomaly:
        values = sorted(self._since_open)
        observed = values[len(values) // 2]
        effect = abs(observed - self._m0)
        rel = effect / abs(self._m0) if self._m0 else math.inf
        sigmas = effect / self._s0
        severity: Severity = (
            "critical" if rel >= 1.0 and sigmas >= 2 * self.spike_z else ("warning" if rel >= 0.25 else "info")
        )
        word = "up" if observed > self._m0 else "down"
        pct = "" if math.isinf(rel) else f" ({rel:.0%})"
        summary = f"Level moved {word} from {self._m0:.4g} to {observed:.4g}{pct}, {sigmas:.1f} noise units."
        return Anomaly(onset, self._m0, observed, score, severity, summary)

    def _learn_models(self, t: float, y: float) -> None:
        flat = self._median.get()
        if flat is not None:
            self._flat_residual.update(abs(y - flat))
            self._flat_error.update(abs(y - flat))
        self._median.update(y)
        for profile in (self._daily, self._weekly):
            if profile is None:
                continue
            pred = profile.predict(t)
            if pred is not None:
                profile.residual.update(abs(y - pred))
                profile.error.update(abs(y - pred))
            profile.learn(t, y)
