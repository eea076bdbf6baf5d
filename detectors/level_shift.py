"""Level shifts of one service series: a step in latency, error rate or throughput, reported once.

A service regression shows as a step: p95 latency jumps from 80 ms to 200 ms and stays there, the
error rate climbs from 0.1% to 3%. Paging every minute of it helps nobody; the finding should open
once, say since when, and close when the series is back to normal.

The detector models "normal" as a baseline prediction plus a robust noise scale:

* the flat baseline is the rolling median of the last ``baseline_window`` buckets, its scale the
  rolling median absolute residual, so a few spikes move neither (past the first 128 values, each
  median is recomputed every 64th of its window, so it lags by less than that);
* seasonal baselines take over once they have two days (weeks) of history *and* predict clearly
  better than the flat median: time-of-day (time-of-week) profiles keep, per slot of the day
  (week), the mean of its values on each of the last 5 days (3 weeks), and predict a bucket by the
  median of those means in its slot and the two neighbouring slots. A slot is a bucket, or
  5 minutes (30 minutes) when buckets are finer. A daily rush hour is then normal, and a flat day
  where the rush should be is not. The bucket spacing (1 minute, 5 minutes, ...) comes from the
  timestamps ``"t"``.

Each point's residual in noise units ``z`` (only its watched direction) becomes a raw anomaly
score, ``1 - exp(-(z / spike_z)^2)``: 0 when predicted, 1 - 1/e at ``spike_z``, near 1 beyond.
Raw scores are not comparable across series (a bursty series mispredicts by a lot every hour), so
the score is their anomaly likelihood (`vigil.detectors.likelihood`): how improbable the mean raw
score of the last ``short`` buckets is, given this series' own history of such means, on Numenta's
log scale (0.5 = a tail probability of 1e-5). A run of unusual residuals alarms, the series' usual
bursts do not. One thing alarms without a history of surprises: a new record, a value past the
range of the last ``record_window`` values (up to a 40th more: the range is kept per block of
values) by ``record`` x that range and at least ``spike_z`` from the baseline (score 1).

The state is float arrays of bounded size, whatever the series' age: about 30 KiB at one-minute
buckets (the seasonal profiles and residual windows), so 10,000 series fit in memory and pickle in
a few hundred MB.

Findings:

* Cold start: no anomaly before ``warmup`` buckets with a value have been learnt; until then
  there is no baseline to compare with, however wild the first values are. Raw scores feed the
  likelihood from half-way through the warm-up (the very first baselines are poor).
* A finding opens when the score reaches ``threshold``, the value is off the baseline in a watched
  ``direction`` and the effect clears ``min_effect_abs`` and ``min_effect_rel`` x |baseline| (so
  tiny but statistically significant wiggles on very quiet series stay quiet). Its onset is where
  the CUSUM run of ``z`` that led to the alarm started (backtracking), so a step is dated to its
  first bucket, not to when it became certain; a new record is dated to itself.
* While open, `anomaly()` keeps the same onset and pre-excursion baseline; no second finding opens.
  The likelihood keeps learning meanwhile, so a series that keeps bursting learns that it does.
* It closes when ``close_after`` consecutive buckets are back within the alarm band of the
  pre-excursion baseline (nearer it than halfway to the excursion's median level), or, if the
  series never comes back, after ``absorb_after`` buckets: by
  then the rolling baseline has moved to the new level, which is accepted as the new normal.

Empty buckets (no ``"y"``) are skipped: they neither teach the model nor count as a return to normal.
"""

from __future__ import annotations

import math
from array import array
from bisect import insort
from typing import Literal, NamedTuple

import numpy as np

from vigil.detectors.base import Anomaly, Observation, Severity
from vigil.detectors.likelihood import AnomalyLikelihood, log_likelihood

__all__ = ["LevelShiftDetector"]

Direction = Literal["up", "down", "both"]

_DAY = 86400.0
_WEEK = 7 * _DAY
# Finest profile slots: a slot keeps one mean per period, so finer buckets only cost memory.
_DAILY_SLOT = 300.0
_WEEKLY_SLOT = 1800.0
_MAD_TO_SIGMA = 1.4826
# Floor of the noise scale as a fraction of the mean absolute residual: where the MAD collapses
# (mostly constant or low-count series) this keeps every small move from being many sigmas.
_ERROR_TO_SIGMA = 0.8
_ERROR_FADING = 0.01  # weight of the newest |residual| in a model's mean error
_EXACT_UP_TO = 128  # values over which a rolling median is exact at every value
_RECORD_BLOCKS = 40  # the record range is kept as the extremes of this many blocks of values


def _ewm(mean: float | None, x: float) -> float:
    return x if mean is None else mean + _ERROR_FADING * (x - mean)


class _Judgement(NamedTuple):
    z: float  # residual in noise units, signed
    pred: float
    scale: float
    raw: float  # 0..1: how badly the baseline predicted the value, in the watched direction
    score: float  # 0..1: the anomaly log-likelihood (1.0 for a new record)
    record: bool


class _RollingMedian:
    """Median of the last `size` values, kept in a ring buffer.

    Over the first values (at most `_EXACT_UP_TO`, while the window only grows) a sorted copy keeps
    the median exact at every value. After that the median is recomputed (numpy partition) every
    64th of the window, so it is stale by fewer values than that, i.e. off by under 1/64 of the window
    in rank: recomputing it at every value would cost more than the rest of a step.
    """

    __slots__ = ("_due", "_sorted", "n", "ring", "size", "value")

    def __init__(self, size: int, typecode: str = "f") -> None:
        self.size = size
        self.ring: array[float] = array(typecode)  # grows to `size`, so a young series pickles small
        self.n = 0  # values seen
        self.value: float | None = None
        self._sorted: list[float] = []  # the ring's values, sorted, while young
        self._due = min(size, _EXACT_UP_TO) + 1  # `n` at the next recomputation

    def __getstate__(self) -> tuple[int, array[float], int, float | None, int]:
        return self.size, self.ring, self.n, self.value, self._due

    def __setstate__(self, state: tuple[int, array[float], int, float | None, int]) -> None:
        self.size, self.ring, self.n, self.value, self._due = state
        self._sorted = sorted(self.ring) if self.n < min(self.size, _EXACT_UP_TO) else []

    def update(self, x: float) -> None:
        n = self.n
        ring = self.ring
        if n < self.size:
            ring.append(x)
        else:
            ring[n % self.size] = x
        n += 1
        self.n = n
        young = min(self.size, _EXACT_UP_TO)
        if n <= young:
            ordered = self._sorted
            insort(ordered, ring[n - 1])  # as stored (float32 rounding included)
            k = n // 2
            self.value = ordered[k] if n % 2 else 0.5 * (ordered[k - 1] + ordered[k])
            if n == young:
                self._sorted = []
        elif n >= self._due:
            m = min(n, self.size)
            self._due = n + max(1, m // 64)
            values = np.frombuffer(ring, dtype=np.float32 if ring.typecode == "f" else np.float64)
            k = m // 2
            if m % 2:
                self.value = float(np.partition(values, k)[k])
            else:
                part = np.partition(values, (k - 1, k))
                self.value = 0.5 * (float(part[k - 1]) + float(part[k]))


class _Profile:
    """A seasonal baseline: the same slot (and its two neighbours) in each of the last few periods.

    A slot is a bucket, or 5 minutes (daily) / 30 minutes (weekly) if buckets are finer, and keeps
    the mean of its values in each of the last `keep` periods: periods x slots floats, however fine
    the buckets. The prediction is the median of those means over the slot and its neighbours, so
    one bad day does not become tomorrow's normal and a bucket that drifts by one slot between
    periods still finds its peers.
    """

    def __init__(self, period: float, slot: float, keep: int) -> None:
        self.period = period
        self.slot = slot
        self.slots = max(1, round(period / slot))
        self.keep = keep
        # Slot-major (slot j's periods at j*keep ...), so a slot and its neighbours are one slice;
        # NaN where a period has no mean yet.
        self.means = array("f", [math.nan]) * (self.slots * keep)
        # Time only moves on, so a slot's values in one period arrive in one run: the run being
        # averaged is enough to know whether a value starts a new mean or joins the last one.
        self.run = (-1, -1)  # (period number, slot) of the mean being averaged
        self.count = 0  # values in it
        self.empty = self.slots * keep  # NaNs left in `means`
        self.first_t: float | None = None
        self.residual = _RollingMedian(1000)  # |y - prediction|: the profile's noise
        self.error: float | None = None  # mean |y - prediction|, big misses included: picks the model

    def _index(self, t: float) -> int:
        return int((t % self.period) // self.slot) % self.slots

    def predict(self, t: float) -> float | None:
        i = self._index(t)
        keep, slots, means = self.keep, self.slots, self.means
        if 0 < i < slots - 1:
            kept = means[(i - 1) * keep : (i + 2) * keep]
        else:
            kept = array("f")
            for j in (i - 1, i, i + 1):
                j %= slots
                kept.extend(means[j * keep : (j + 1) * keep])
        peers = sorted([v for v in kept if v == v] if self.empty else kept)
        n = len(peers)
        if n < 3:
            return None
        return peers[n // 2] if n % 2 else 0.5 * (peers[n // 2 - 1] + peers[n // 2])

    def learn(self, t: float, y: float) -> None:
        if self.first_t is None:
            self.first_t = t
        i = self._index(t)
        period = int(t // self.period)
        k = i * self.keep + period % self.keep
        if self.run != (period, i):
            self.run = (period, i)
            self.count = 1
            if self.means[k] != self.means[k]:
                self.empty -= 1
            self.means[k] = y
        else:
            self.count += 1
            self.means[k] += (y - self.means[k]) / self.count


class LevelShiftDetector:
    """Streaming step-change detector for per-bucket service metrics (river protocol, see `base`).

    direction: which excursions count: "up" for latency and error rate, "both" for throughput.
    threshold: score (0..1) at which a finding opens: the log-likelihood scale of `likelihood`, 0.5
        being a tail probability of 1e-5.
    warmup: buckets with a value before any anomaly (cold start).
    baseline_window: buckets in the rolling median baseline; also sets how fast a new level is learnt.
    spike_z: residual (noise units) at which the raw score is 1 - 1/e; a new record must clear it too.
    short, horizon: the likelihood's short-term mean and history, in buckets.
    record, record_window: a new record is past the range of the last `record_window` values by
        `record` x that range.
    cusum_k: CUSUM allowance (noise units) of the run that dates an excursion's onset.
    min_effect_abs, min_effect_rel: smallest |observed - baseline| worth a finding, absolute and
        relative to |baseline|.
    close_after: consecutive in-band buckets that end a finding.
    absorb_after: buckets after which a level that persists is the new normal, closing the finding.
    seasonal: learn time-of-day and time-of-week profiles.
    """

    def __init__(
        self,
        *,
        direction: Direction = "both",
        threshold: float = 0.5,
        warmup: int = 100,
        baseline_window: int = 600,
        spike_z: float = 6.0,
        short: int = 20,
        horizon: int = 8640,
        record: float = 0.05,
        record_window: int = 4000,
        cusum_k: float = 1.0,
        min_effect_abs: float = 0.0,
        min_effect_rel: float = 0.05,
        close_after: int = 10,
        absorb_after: int = 600,
        seasonal: bool = True,
    ) -> None:
        if direction not in ("up", "down", "both"):
            raise ValueError(f"direction must be up, down or both, not {direction!r}")
        self.direction: Direction = direction
        self.threshold = threshold
        self.warmup = warmup
        self.baseline_window = baseline_window
        self.spike_z = spike_z
        self.record = record
        self.record_window = record_window
        self.cusum_k = cusum_k
        self.min_effect_abs = min_effect_abs
        self.min_effect_rel = min_effect_rel
        self.close_after = close_after
        self.absorb_after = absorb_after
        self.seasonal = seasonal

        self._n = 0  # buckets with a value learnt
        self._last_t: float | None = None
        self._dt: float | None = None  # bucket spacing, seconds
        self._gaps: list[float] = []
        # The values themselves in float64, so a constant series is predicted exactly.
        self._median = _RollingMedian(baseline_window, "d")
        self._flat_residual = _RollingMedian(baseline_window)
        self._flat_error: float | None = None
        self._daily: _Profile | None = None
        self._weekly: _Profile | None = None
        # Raw scores are learnt from halfway through the warm-up (the first baselines are poor), so
        # the likelihood has half a warm-up of history when findings may first open. Its floors suit
        # this raw score: Gaussian noise gives a mean of about 0.026 and a 20-bucket mean's standard
        # deviation of about 0.008, so floors of 0.01 bind only on series steadier than that.
        self._likelihood = AnomalyLikelihood(
            short=short, horizon=horizon, min_mean=0.01, min_std=0.01, learn=max(1, warmup - warmup // 2)
        )
        # Range of the last `record_window` values: the max and min of each of the last blocks, and
        # of the block being filled (fixed memory, unlike a monotone queue on a trending series).
        self._block = max(1, record_window // _RECORD_BLOCKS)
        blocks = -(-record_window // self._block)
        self._block_highs = array("d", [-math.inf]) * blocks
        self._block_lows = array("d", [math.inf]) * blocks
        self._high = -math.inf
        self._low = math.inf
        # The last judgement and the models' predictions behind it, reused by `learn_one` when it
        # follows `score_one` on the same point: (t, y, buckets learnt, judgement, flat, daily, weekly).
        self._judged: tuple[float, float, int, _Judgement, float | None, float | None, float | None] | None = None
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
        self._since_open = array("d")
        self._in_band = 0

    # -- model -----------------------------------------------------------------------------------

    def _spacing(self, t: float) -> None:
        if self._last_t is not None and t > self._last_t and self._dt is None:
            self._gaps.append(t - self._last_t)
            if len(self._gaps) >= 5:
                # The smallest recent gap is the bucket width; larger ones are empty buckets.
                self._dt = min(self._gaps)
                if self.seasonal and self._dt <= _DAY / 12:
                    self._daily = _Profile(_DAY, max(self._dt, _DAILY_SLOT), 5)
                    self._weekly = _Profile(_WEEK, max(self._dt, _WEEKLY_SLOT), 3)
        self._last_t = t

    def _judge(self, t: float, y: float) -> _Judgement:
        """Residual, raw score and score of a value at `t`, before learning it."""
        judged = self._judged
        if judged is not None and judged[0] == t and judged[1] == y and judged[2] == self._n:
            return judged[3]
        # Prediction and noise scale (sigma) from the best ready model.
        flat = self._median.value
        best_pred = flat or 0.0
        best_mad, best_error = self._flat_residual.value or 0.0, self._flat_error or 0.0
        preds: list[float | None] = [None, None]
        if self._daily is not None:
            for k, profile in enumerate((self._daily, self._weekly)):
                assert profile is not None
                pred = preds[k] = profile.predict(t)
                # Ready after two periods of history.
                if pred is None or profile.first_t is None or t - profile.first_t < 2.0 * profile.period:
                    continue
                mad, error = profile.residual.value, profile.error or 0.0
                # A profile must beat the flat median clearly, or its extra freedom only adds noise.
                if mad is not None and error < 0.8 * best_error:
                    best_pred, best_mad, best_error = pred, mad, error
        floor = 1e-9 + 1e-6 * abs(best_pred)
        # The mean error keeps the scale honest on series that are mostly constant (MAD = 0) but move.
        pred, scale = best_pred, max(best_mad * _MAD_TO_SIGMA, _ERROR_TO_SIGMA * best_error, floor)
        z = (y - pred) / scale
        up = self.direction in ("up", "both")
        down = self.direction in ("down", "both")
        watched = max(z if up else 0.0, -z if down else 0.0)
        raw = 1.0 - math.exp(-((watched / self.spike_z) ** 2))
        score = log_likelihood(self._likelihood.tail(raw))
        # A value past everything seen lately, and far from the baseline, needs no history of surprises.
        record = False
        if watched >= self.spike_z and self._n > 0:
            hi = max(self._high, max(self._block_highs))
            lo = min(self._low, min(self._block_lows))
            margin = self.record * (hi - lo)
            record = (up and y > hi + margin) or (down and y < lo - margin)
        result = _Judgement(z, pred, scale, raw, 1.0 if record else score, record)
        self._judged = (t, y, self._n, result, flat, preds[0], preds[1])
        return result

    def _cusum(self, z: float) -> tuple[float, float]:
        # Clipped, so that one spike's run drains within a few buckets and does not date the next step.
        zc = max(-self.spike_z, min(self.spike_z, z))
        return max(0.0, self._up + zc - self.cusum_k), max(0.0, self._down - zc - self.cusum_k)

    # -- river protocol ----------------------------------------------------------------------------

    def score_one(self, x: Observation) -> float:
        raw = x.get("y")
        if raw is None or self._n < self.warmup:
            return 0.0
        return self._judge(float(x["t"]), float(raw)).score

    def learn_one(self, x: Observation) -> None:
        t = float(x["t"])
        self._spacing(t)
        raw = x.get("y")
        if raw is None:
            return
        y = float(raw)
        if self._n > 0:
            judged = self._judge(t, y)
            if self._n >= self.warmup:
                self._step(t, y, judged)
            if self._n >= self.warmup // 2:
                self._likelihood.learn_one(judged.raw)
        self._learn_models(t, y)
        self._judged = None
        self._n += 1

    def anomaly(self) -> Anomaly | None:
        return self._open

    # -- findings ----------------------------------------------------------------------------------

    def _step(self, t: float, y: float, judged: _Judgement) -> None:
        up, down = self._cusum(judged.z)
        if up > 0.0 and self._up == 0.0:
            self._up_start = t
        if down > 0.0 and self._down == 0.0:
            self._down_start = t
        self._up, self._down = up, down

        if self._open is not None:
            self._track(t, y)
            return
        # The score may stay high for a few buckets after a run; only a value off the baseline opens.
        if judged.score < self.threshold or judged.z == 0.0:
            return
        sign = 1 if judged.z > 0 else -1
        if self.direction != "both" and (sign > 0) != (self.direction == "up"):
            return
        pred = judged.pred
        if abs(y - pred) < max(self.min_effect_abs, self.min_effect_rel * abs(pred)):
            return
        start = self._up_start if sign > 0 else self._down_start
        # A new record is its own first bucket; otherwise the run that led here started the excursion.
        onset = t if start is None or judged.record else min(start, t)
        self._sign, self._m0, self._s0 = sign, pred, judged.scale
        self._since_open = array("d", [y])
        self._in_band = 0
        self._open = self._describe(onset, judged.score)

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
        self._since_open = array("d")
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
        """Learn a value; the predictions it was judged against are those of `_judge` at `t`, if any."""
        if y > self._high:
            self._high = y
        if y < self._low:
            self._low = y
        n = self._n + 1
        if n % self._block == 0:
            b = (n // self._block) % len(self._block_highs)
            self._block_highs[b], self._block_lows[b] = self._high, self._low
            self._high, self._low = -math.inf, math.inf
        judged = self._judged
        if judged is not None and judged[0] == t and judged[1] == y and judged[2] == self._n:
            flat, daily, weekly = judged[4], judged[5], judged[6]
        else:
            flat = self._median.value
            daily = None if self._daily is None else self._daily.predict(t)
            weekly = None if self._weekly is None else self._weekly.predict(t)
        if flat is not None:
            self._flat_residual.update(abs(y - flat))
            self._flat_error = _ewm(self._flat_error, abs(y - flat))
        self._median.update(y)
        for profile, pred in ((self._daily, daily), (self._weekly, weekly)):
            if profile is None:
                continue
            if pred is not None:
                profile.residual.update(abs(y - pred))
                profile.error = _ewm(profile.error, abs(y - pred))
            profile.learn(t, y)
