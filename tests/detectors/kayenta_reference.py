"""Kayenta's default canary judge, re-implemented as the yardstick for Vigil's canary power tests.

Kayenta (spinnaker/kayenta) is the canary analysis service behind Spinnaker; its default judge is
``NetflixACAJudge``. This module reproduces the parts of it that decide a verdict, with the
defaults the judge passes, so that Vigil's rates can be set beside Kayenta's on the same data:

* Per metric (``kayenta-judge``: ``NetflixACAJudge.classifyMetric``): the metric is classified by
  ``MannWhitneyClassifier(tolerance = 0.25, confLevel = 0.98)`` in the metric's configured
  direction, ``either`` unless the config says ``increase`` or ``decrease``.
* The interval (``kayenta-mannwhitney``: ``MannWhitney.calculateConfidenceInterval``, a port of
  the asymptotic branch of R's ``wilcox.test(..., conf.int = TRUE)``): the 98% Mann-Whitney
  confidence interval of the shift canary - baseline, with its Hodges-Lehmann point estimate.
  Kayenta finds each end by root-finding on the continuity-corrected normal score of the rank
  statistic ``W(mu) = #{(i, j): canary_i - mu > baseline_j}``; the roots fall on order statistics
  of the ``m * n`` differences ``canary_i - baseline_j`` (the Bauer / Hollander-Wolfe
  construction), which is how it is computed here: with ``sigma = sqrt(m n (m + n + 1) / 12)``,
  ``c = m n / 2 + 1/2 + z sigma`` and z the normal 99% quantile, the lower end is the
  ``ceil(m n - c)``-th smallest difference and the upper end the ``(floor(c) + 1)``-th; the
  estimate is the median difference (where the score with quantile 0 changes sign). The two
  agree for samples without ties, such as the continuous latencies of the power tests; Kayenta's
  solver stops within 1e-6 of the same points.
* The classification (``MannWhitneyClassifier.compare`` and ``classify``): ``High`` when the
  interval's lower end exceeds ``0.25 * |estimate|`` and the canary's mean is at least the
  baseline's (``EffectSizes.meanRatio`` >= the default effect-size threshold 1.0); ``Low``
  symmetrically (upper end below ``-0.25 * |estimate|`` and mean ratio <= 1.0); else ``Pass``.
  Empty arms are ``Nodata``; identical arms, or one distinct value over both, ``Pass``. A
  ``critical`` metric that is High or Low is marked critical.
* One value per arm (an error rate read over one interval per arm): each arm holds a single
  distinct value, so Kayenta's ``MannWhitneyUTest`` adds tiny Gaussian noise, but the search
  range of the roots is still the single difference ``[d, d]``; the estimate's Brent solver is
  handed that empty bracket and throws. Such a metric gets no classification (``Error`` here), so it is never
  High or Low: Kayenta can almost never flag an error-rate change it sees as one number per arm.
* The score (``kayenta-judge``: ``WeightedSumScorer``, Kayenta's score calculation): per group,
  ``100 * Pass / (Pass + High + Low)`` (``Nodata`` and ``Error`` are left out); groups combine by
  their weights (one group here); any critical metric that is not ``Pass`` makes the score 0.
* The verdict (``ThresholdScoreClassifier``): score >= pass threshold is ``PASS``, >= marginal
  threshold ``MARGINAL``, else ``FAIL``; the thresholds come with each request, 90 and 75 here.

Not reproduced: NaN handling (the generated samples have none) and the judge's optional outlier
filter (``IQRDetector`` with factor 3.0, which on log-normal samples with sigma 0.5 would drop
about 0.6% of values, all in the far tail, and hardly moves a rank-based interval).

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> base, slow = rng.lognormal(4.6, 0.5, 400), rng.lognormal(4.6, 0.5, 400) * 1.5
>>> classify_metric(base, slow).label, classify_metric(base, base.copy()).label
('High', 'Pass')
>>> judge([MetricPair("latency", base, slow), MetricPair("errors", np.array([0.01]), np.array([0.06]))]).verdict
'FAIL'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

Label = Literal["Pass", "High", "Low", "Nodata", "Error"]
Direction = Literal["either", "increase", "decrease"]
Verdict = Literal["PASS", "MARGINAL", "FAIL"]
Array = npt.NDArray[np.float64]

TOLERANCE = 0.25  # NetflixACAJudge: MannWhitneyClassifier(tolerance = 0.25, ...)
CONF_LEVEL = 0.98  # NetflixACAJudge: MannWhitneyClassifier(..., confLevel = 0.98)
EFFECT_SIZE_THRESHOLDS = (1.0, 1.0)  # MannWhitneyClassifier default: (low, high) mean ratio
PASS_THRESHOLD = 90.0
MARGINAL_THRESHOLD = 75.0


@dataclass(frozen=True)
class Interval:
    """The Mann-Whitney confidence interval of the shift canary - baseline, and its estimate."""

    lower: float
    upper: float
    estimate: float


@dataclass(frozen=True)
class Classification:
    label: Label
    critical: bool = False


@dataclass(frozen=True)
class MetricPair:
    """One metric's values for both arms, as Kayenta's ``MetricSetPair`` hands them to the judge."""

    name: str
    baseline: Array
    canary: Array
    direction: Direction = "either"
    critical: bool = False


@dataclass(frozen=True)
class Result:
    score: float
    verdict: Verdict
    classifications: dict[str, Classification] = field(default_factory=dict)


def mann_whitney_interval(canary: Array, baseline: Array, conf_level: float = CONF_LEVEL) -> Interval:
    """Kayenta's ``MannWhitney.calculateConfidenceInterval``, as order statistics of the differences."""
    xs, ys = np.sort(canary), np.sort(baseline)
    k_lower, k_upper = _interval_ranks(len(xs), len(ys), conf_level)
    return Interval(_kth_difference(xs, ys, k_lower), _kth_difference(xs, ys, k_upper), _median_difference(xs, ys))


def classify_metric(
    baseline: Array,
    canary: Array,
    *,
    direction: Direction = "either",
    critical: bool = False,
    tolerance: float = TOLERANCE,
    conf_level: float = CONF_LEVEL,
) -> Classification:
    """``MannWhitneyClassifier.classify`` with the judge's defaults.

    It decides High / Low with the estimate and one count of the differences instead of both
    interval ends (the lower end exceeds ``t`` exactly when fewer than ``k_lower`` differences are
    at most ``t``), which is the same answer at a fraction of the cost.
    """
    xs, ys = np.sort(np.asarray(canary, dtype=np.float64)), np.sort(np.asarray(baseline, dtype=np.float64))
    if len(xs) == 0 or len(ys) == 0:
        return Classification("Nodata")
    if len(xs) == len(ys) and np.array_equal(xs, ys):
        return Classification("Pass")  # "The Canary and Baseline data are identical"
    if np.unique(np.concatenate([xs, ys])).size == 1:
        return Classification("Pass")
    if len(xs) == 1 and len(ys) == 1:
        # One value per arm: after the noise the interval is [d, d] and the estimate's solver throws.
        return Classification("Error")
    m, n = len(xs), len(ys)
    k_lower, k_upper = _interval_ranks(m, n, conf_level)
    estimate = _median_difference(xs, ys)
    bound = tolerance * abs(estimate)
    baseline_mean, canary_mean = float(ys.mean()), float(xs.mean())
    deviation = 1.0 if baseline_mean == 0.0 else canary_mean / baseline_mean  # EffectSizes.meanRatio
    # lower > bound  <=>  fewer than k_lower differences are <= bound
    high = direction in ("either", "increase") and _count_le(xs, ys, bound) < k_lower
    high = high and deviation >= EFFECT_SIZE_THRESHOLDS[1]
    # upper < -bound  <=>  at least k_upper differences are < -bound
    low = direction in ("either", "decrease") and _count_lt(xs, ys, -bound) >= k_upper
    low = low and deviation <= EFFECT_SIZE_THRESHOLDS[0]
    if high:
        return Classification("High", critical)
    if low:
        return Classification("Low", critical)
    return Classification("Pass")


def score(classifications: Sequence[Classification]) -> float:
    """``WeightedSumScorer.score`` for one group: share of Pass among Pass, High and Low; 0 on a critical failure."""
    if any(c.critical and c.label != "Pass" for c in classifications):
        return 0.0
    counted = [c for c in classifications if c.label in ("Pass", "High", "Low")]
    if not counted:
        return 0.0
    return 100.0 * sum(c.label == "Pass" for c in counted) / len(counted)


def classify_score(
    value: float, pass_threshold: float = PASS_THRESHOLD, marginal: float = MARGINAL_THRESHOLD
) -> Verdict:
    """``ThresholdScoreClassifier.classify``."""
    if value >= pass_threshold:
        return "PASS"
    if value >= marginal:
        return "MARGINAL"
    return "FAIL"


def judge(metrics: Sequence[MetricPair]) -> Result:
    """``NetflixACAJudge.judge``: classify each metric, score them, classify the score."""
    classifications = {
        m.name: classify_metric(m.baseline, m.canary, direction=m.direction, critical=m.critical) for m in metrics
    }
    value = score(list(classifications.values()))
    return Result(value, classify_score(value), classifications)


def _interval_ranks(m: int, n: int, conf_level: float) -> tuple[int, int]:
    """1-based ranks, among the sorted differences, of the interval's lower and upper ends."""
    mn = m * n
    z = float(stats.norm.ppf(1.0 - (1.0 - conf_level) / 2.0))
    c = mn / 2.0 + 0.5 + z * math.sqrt(mn * (m + n + 1) / 12.0)
    # Kayenta's root-finding returns the end of the search range (the extreme difference) when
    # the score never crosses the quantile there, hence the clamps.
    return min(max(math.ceil(mn - c), 1), mn), min(max(math.floor(c) + 1, 1), mn)


def _count_le(xs: Array, ys: Array, t: float) -> int:
    """Pairs with xs[i] - ys[j] <= t (counted as ys[j] >= xs[i] - t); xs and ys sorted."""
    return len(xs) * len(ys) - int(np.searchsorted(ys, xs - t, side="left").sum())


def _count_lt(xs: Array, ys: Array, t: float) -> int:
    """Pairs with xs[i] - ys[j] < t (counted as ys[j] > xs[i] - t); xs and ys sorted."""
    return len(xs) * len(ys) - int(np.searchsorted(ys, xs - t, side="right").sum())


def _median_difference(xs: Array, ys: Array) -> float:
    mn = len(xs) * len(ys)
    if mn % 2:
        return _kth_difference(xs, ys, (mn + 1) // 2)
    return 0.5 * (_kth_difference(xs, ys, mn // 2) + _kth_difference(xs, ys, mn // 2 + 1))


def _kth_difference(xs: Array, ys: Array, k: int) -> float:
    """The k-th smallest (1-based) of the differences xs[i] - ys[j], without forming all of them.

    Bisection on the value until at most m + n differences lie in the bracket, then those are
    formed and sorted.
    """
    m, n = len(xs), len(ys)
    lo, hi = float(xs[0] - ys[-1]), float(xs[-1] - ys[0])
    c_lo, c_hi = _count_le(xs, ys, lo), _count_le(xs, ys, hi)
    if c_lo >= k:
        return lo
    if c_hi < k:
        return hi
    while c_hi - c_lo > m + n:
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi:
            return hi
        c = _count_le(xs, ys, mid)
        if c >= k:
            hi, c_hi = mid, c
        else:
            lo, c_lo = mid, c
    start = np.searchsorted(ys, xs - hi, side="left")
    lengths = np.searchsorted(ys, xs - lo, side="left") - start
    rows = np.repeat(np.arange(m), lengths)
    cols = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths - start, lengths)
    candidates = np.sort(xs[rows] - ys[cols])
    if len(candidates) == 0:
        return hi
    return float(candidates[min(max(k - c_lo, 1), len(candidates)) - 1])
