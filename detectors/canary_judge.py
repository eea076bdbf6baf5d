"""Canary analysis: promote or roll back, from per-arm samples of one window (Kayenta-style).

A deploy pipeline runs the new version (canary) beside the old one (baseline) and asks whether
the canary is worse. The caller gives one `CheckInput` per question, for the whole service and
for each of its top operations; `judge` answers each and combines the answers in a `Judgement`.

Rules, per check kind (every test is one-sided: only "canary worse" can fail a check):

- ``latency``: van der Waerden normal-scores rank test on the request latencies, alternative
  "canary slower" (`normal_scores_test`; `statistic` is its z). `effect` is the Hodges-Lehmann
  estimate of the canary's latency ratio, minus 1: ``exp(median over all pairs of
  log canary_i - log baseline_j) - 1``, so +0.10 means the typical request is 10% slower. The
  check fails only when the Holm-adjusted p-value is at most `alpha` AND the effect exceeds
  `latency_tolerance` (default 0.05) AND the shift it implies at the baseline median,
  ``effect * baseline p50``, exceeds `latency_min_shift_ms` (default 0: off). A regression
  confined to the tail (p99 up, the bulk unchanged) therefore passes; p50, p95 and p99 are
  reported for people to read.
- ``error_rate``: Fisher's exact test of errors/requests, one-sided, alternative "canary rate
  higher" (`fisher_exact_greater`; `statistic` is the canary's error count, the statistic of
  the test given the margins). `effect` is ``canary rate - baseline rate`` (absolute). It fails
  when the adjusted p-value is at most `alpha` AND the effect exceeds `error_rate_tolerance`
  (default 0.005, half a percentage point) AND the relative increase exceeds
  `error_rate_relative_tolerance` (default 0: off). Zero errors in both arms passes.
- ``metric``: Mann-Whitney U on two arrays of metric values (say per-instance CPU per
  minute), in the check's `bad_direction` ("increase" or "decrease"). `effect` is the signed
  relative change of the median, ``(canary p50 - baseline p50) / |baseline p50|``; it fails
  when significant AND the change in the bad direction exceeds `metric_tolerance` (0.10).

Why these defaults. A run of the default analysis of a service has two checks, whole-service
latency and error rate (operation checks add to the family). The product's requirements, with
log-normal latencies (sigma 0.5) and Bernoulli errors, 1% in both arms unless said: no
difference, at most 1% of runs FAIL (any check); latency +50% at 50 requests per arm, at least
90% FAIL; +25% at 500, 99%; +10% at 500, 60%; errors 1% -> 6% at 500 per arm, 95%; 1% -> 3% at
2,000, 95%. Those sit near what any test can reach at a 1% false-alarm rate, so:

- `alpha` = 0.01, family-wise. Holm bounds the chance of any false FAIL in a run at 1% by
  construction; the first check to fail is tested at alpha / (number of checks), 0.005 here.
  Spending less of the 1% costs the latency requirements at 50 and 500 per arm; spending more
  (say, not counting an error-rate check that cannot reach significance) costs the false-FAIL
  requirement.
- The latency test is the normal-scores test, not Mann-Whitney: both are rank tests, with the
  same distribution-free false-alarm rate, but for a shift of log-normal latencies the
  normal-scores test is as powerful as the t-test on log latencies (the best test there),
  while Mann-Whitney has 95% of its efficiency. At 0.005 that is the difference between about
  90.5% and 91.5% FAIL at +50% / 50 per arm, the tightest requirement.
- The latency effect is the Hodges-Lehmann ratio rather than the ratio of medians: it has
  about 1.5 times less variance, so the tolerance cuts noise, not real shifts. Its tolerance is
  5%, not 10%: at 500 per arm a true +10% has a 50/50 chance of showing less than +10% (which a
  10% tolerance would pass), while a significant result at 500 per arm already implies a
  shift of about +8%, so a 5% tolerance costs no power at the volumes of a canary window. What
  it does is keep trivially small shifts from failing at very large volumes: +2% at 20,000
  requests per arm is significant and passes. From about 1,400 requests per arm it also trims
  false FAILs (a significant noise shift at 2,000 per arm is about +4%).
- The error-rate test is Fisher's exact test at every count, instead of the z-test: it is
  exact, so its false-alarm rate never exceeds the level whatever the counts (the z-test's
  normal approximation is poor at low counts), and at the requirements' volumes its power is
  within a point of the z-test's, while its false-alarm rate at 500 per arm and 1% errors is
  half the z-test's (0.15% vs 0.31% at 0.005), which is what keeps the run-level false-FAIL
  rate at 500 per arm near 0.65% rather than 0.8%.

Measured by Monte-Carlo (``tests/bench/canary_power.py``, 1,000 runs per condition; expected
rates in brackets, from larger simulations and exact enumeration of the error counts): no
difference, false FAIL 0.6% / 0.3% / 0.2% at 50 / 500 / 2,000 per arm [0.5%, 0.65%, 0.45%];
latency +50% at 50, 90.8% FAIL [91.3%]; +25% at 500, 100%; +10% at 500, 66.2% [66.6%]; errors
1% -> 6% at 500, 97.9% [97.2%]; 1% -> 3% at 2,000, 97.4% [97.7%]; 30 per arm with the default
minimum of 50, 100% INCONCLUSIVE. Kayenta's default judge on the same data flags 77%, 100% and
44% of the latency conditions and almost none of the error-rate ones (it sees an error rate as
one number per arm).

Too little data: when either arm has fewer than `min_requests` samples (requests for the
error rate, latencies for latency, values for metrics; `min_metric_values` may set a
different bar for metrics), the check is ``inconclusive`` and its reason gives both counts.
It is never guessed at. NaN or infinite inputs, negative latencies, or error counts outside
``0..requests`` raise ValueError naming the check.

Multiplicity: every conclusive check of one `judge` call is one family, and its p-values are
adjusted with Holm-Bonferroni. Holm bounds the probability of any false FAIL (the family-wise
error rate) at `alpha` under any dependence between the tests, which matters here: a service
check contains the requests of its operation checks, so the tests are correlated. One false
FAIL rolls back a good deploy, so the family-wise rate, not the false discovery rate
(Benjamini-Hochberg), is the error to bound; and with strong control every check named in a
FAIL is individually trustworthy. Both raw and adjusted p-values are reported.

Verdict: ``FAIL`` if any check fails. Else ``INCONCLUSIVE`` if any whole-service check
(``scope="service"``, the default) is inconclusive, or if no check at all is conclusive. Else
``PASS``: an inconclusive *operation* check (a low-traffic endpoint) does not block promotion,
since the service checks cover its requests in aggregate, but it is listed in the reason.
`score` is Kayenta's: the percentage of conclusive checks that pass (None when none is
conclusive). Everything in `Judgement.to_dict()` is JSON-ready (non-finite floats become
None).

>>> import numpy as np
>>> rng = np.random.default_rng(7)
>>> base = ArmSample(rng.lognormal(5.0, 0.4, 400), errors=1, requests=400)
>>> slow = ArmSample(rng.lognormal(5.0, 0.4, 400) * 1.5, errors=2, requests=400)
>>> judge([CheckInput("checkout", "latency", base, slow)]).verdict
'FAIL'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "ArmSample",
    "ArmSummary",
    "CheckInput",
    "CheckKind",
    "CheckResult",
    "Direction",
    "Judgement",
    "Result",
    "Scope",
    "Values",
    "Verdict",
    "hodges_lehmann",
    "holm",
    "judge",
    "mann_whitney_u",
    "normal_scores_test",
]

CheckKind = Literal["latency", "error_rate", "metric"]
Direction = Literal["increase", "decrease"]
Scope = Literal["service", "operation"]
Result = Literal["pass", "fail", "inconclusive"]
Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE"]
Values = Sequence[float] | npt.NDArray[Any]

_KINDS: tuple[str, ...] = ("latency", "error_rate", "metric")
_DIRECTIONS: tuple[str, ...] = ("increase", "decrease")
_SCOPES: tuple[str, ...] = ("service", "operation")
# Latencies are compared as ratios (differences of logarithms); below 1 microsecond a latency is
# taken as 1 microsecond, so that a 0 ms reading has a logarithm.
_LOG_FLOOR_MS = 1e-3


@dataclass(frozen=True, eq=False)
class ArmSample:
    """One arm's requests in the window: a latency per request, and the error count.

    `requests` defaults to the number of latencies; give it when latencies are sampled.
    """

    latencies_ms: Values = ()
    errors: int = 0
    requests: int | None = None


@dataclass(frozen=True, eq=False)
class CheckInput:
    """One question about the canary.

    `baseline` and `canary` are `ArmSample`s for ``latency`` and ``error_rate`` checks (a plain
    array of latencies is accepted for ``latency``) and arrays of values for ``metric`` checks.
    `name` is the subject (the service or an operation, e.g. ``"GET /checkout"``); (name, kind)
    must be unique within one analysis. `bad_direction` applies to metric checks only.
    """

    name: str
    kind: CheckKind
    baseline: ArmSample | Values
    canary: ArmSample | Values
    bad_direction: Direction = "increase"
    scope: Scope = "service"


@dataclass(frozen=True)
class ArmSummary:
    """What one arm looked like in one check.

    `n` is the sample size the check tested: latencies (latency), requests (error rate) or
    values (metric). For metric checks the ``p*_ms`` fields hold the values' percentiles in the
    metric's own unit. Percentiles use linear interpolation; None when there is no sample.
    """

    n: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    error_rate: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "p50_ms": _json_float(self.p50_ms),
            "p95_ms": _json_float(self.p95_ms),
            "p99_ms": _json_float(self.p99_ms),
            "error_rate": _json_float(self.error_rate),
        }


@dataclass(frozen=True)
class CheckResult:
    """The answer to one check. Statistic, p-values and effect are None when inconclusive."""

    name: str
    kind: CheckKind
    baseline: ArmSummary
    canary: ArmSummary
    statistic: float | None
    p_value: float | None
    adjusted_p_value: float | None
    effect: float | None
    result: Result
    reason: str
    scope: Scope = "service"
    method: str | None = None  # "normal-scores", "fisher-exact" or "mann-whitney-u"

    @property
    def label(self) -> str:
        return _label(self.kind, self.name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "scope": self.scope,
            "method": self.method,
            "baseline": self.baseline.to_dict(),
            "canary": self.canary.to_dict(),
            "statistic": _json_float(self.statistic),
            "p_value": _json_float(self.p_value),
            "adjusted_p_value": _json_float(self.adjusted_p_value),
            "effect": _json_float(self.effect),
            "result": self.result,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Judgement:
    """The verdict of one canary analysis, with every check behind it."""

    verdict: Verdict
    score: float | None  # 0..100, share of conclusive checks that pass; None if none is conclusive
    reason: str
    checks: list[CheckResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "score": _json_float(self.score),
            "reason": self.reason,
            "checks": [check.to_dict() for check in self.checks],
        }


def judge(
    checks: Sequence[CheckInput],
    *,
    alpha: float = 0.01,
    min_requests: int = 50,
    min_metric_values: int | None = None,
    latency_tolerance: float = 0.05,
    latency_min_shift_ms: float = 0.0,
    error_rate_tolerance: float = 0.005,
    error_rate_relative_tolerance: float = 0.0,
    metric_tolerance: float = 0.10,
) -> Judgement:
    """Judge a canary against its baseline; see the module docstring for the rules."""
    if not checks:
        raise ValueError("judge needs at least one check")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if min_requests < 1:
        raise ValueError(f"min_requests must be at least 1, got {min_requests}")
    min_values = min_requests if min_metric_values is None else min_metric_values
    if min_values < 1:
        raise ValueError(f"min_metric_values must be at least 1, got {min_values}")
    tolerances = (
        latency_tolerance,
        latency_min_shift_ms,
        error_rate_tolerance,
        error_rate_relative_tolerance,
        metric_tolerance,
    )
    for tolerance in tolerances:
        if not tolerance >= 0.0:  # also rejects NaN
            raise ValueError(f"tolerances must be >= 0, got {tolerance}")

    seen: set[tuple[str, str]] = set()
    for check in checks:
        if (check.name, check.kind) in seen:
            raise ValueError(f"duplicate check: {_label(check.kind, check.name)}")
        seen.add((check.name, check.kind))

    tests = [_run_test(check, min_requests, min_values) for check in checks]

    # One family: every check that produced a p-value.
    conclusive = [i for i, t in enumerate(tests) if t.p_value is not None]
    adjusted = holm([_not_none(tests[i].p_value) for i in conclusive])
    adjusted_by_index = dict(zip(conclusive, adjusted, strict=True))

    results: list[CheckResult] = []
    for i, (check, test) in enumerate(zip(checks, tests, strict=True)):
        adjusted_p = adjusted_by_index.get(i)
        if test.p_value is None or adjusted_p is None or test.effect is None:
            result: Result = "inconclusive"
            reason = f"{_label(check.kind, check.name)}: {test.detail}"
        else:
            beyond, tolerance_text = _beyond_tolerance(
                check,
                test,
                latency_tolerance=latency_tolerance,
                latency_min_shift_ms=latency_min_shift_ms,
                error_rate_tolerance=error_rate_tolerance,
                error_rate_relative_tolerance=error_rate_relative_tolerance,
                metric_tolerance=metric_tolerance,
            )
            numbers = f"{_label(check.kind, check.name)}: {test.detail}, p = {_p(test.p_value)}"
            if len(conclusive) > 1:
                numbers += f" (Holm-adjusted {_p(adjusted_p)})"
            if test.no_difference:
                result = "pass"
                reason = f"{_label(check.kind, check.name)}: {test.detail}"
            elif adjusted_p <= alpha and beyond:
                result = "fail"
                reason = numbers
            elif adjusted_p > alpha:
                result = "pass"
                reason = f"{numbers}: not significant at alpha {alpha:g}"
            else:
                result = "pass"
                reason = f"{numbers}: {tolerance_text}"
        results.append(
            CheckResult(
                name=check.name,
                kind=check.kind,
                baseline=test.baseline,
                canary=test.canary,
                statistic=test.statistic,
                p_value=test.p_value,
                adjusted_p_value=adjusted_p,
                effect=test.effect,
                result=result,
                reason=reason,
                scope=check.scope,
                method=test.method,
            )
        )
    return _verdict(results)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input's order.

    The i-th smallest p is multiplied by (m - i + 1), made monotone, and capped at 1, so that
    rejecting where ``adjusted <= alpha`` is Holm's step-down procedure.

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def mann_whitney_u(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], alternative: Literal["greater", "less"]
) -> tuple[float, float]:
    """One-sided Mann-Whitney U test of x against y: (U of x, p-value).

    "greater" means x tends to be larger than y. The same numbers as
    ``scipy.stats.mannwhitneyu(x, y, alternative=..., method="auto")`` (normal approximation
    with tie and continuity corrections; exact when an arm has 8 or fewer values and there are
    no ties), computed directly because SciPy's generic wrapper costs a millisecond a call.
    Both arms must be non-empty. When every value is equal there is no evidence: p is 1.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("mann_whitney_u needs two non-empty samples")
    combined = np.concatenate([x, y])
    ranks, counts = _mid_ranks(combined)
    u1 = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2.0
    if len(counts) == 1:
        return u1, 1.0
    if min(n1, n2) <= 8 and len(counts) == len(combined):
        from scipy import stats  # type: ignore[import-untyped, unused-ignore]  # here: 0.5 s of every start

        exact = stats.mannwhitneyu(x, y, alternative=alternative, method="exact")
        return u1, float(exact.pvalue)
    u = u1 if alternative == "greater" else n1 * n2 - u1
    n = n1 + n2
    tie_term = float(np.sum(counts.astype(np.float64) ** 3 - counts))
    sd = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))))
    z = (u - n1 * n2 / 2.0 - 0.5) / sd
    return u1, min(1.0, max(0.0, _normal_sf(z)))


def normal_scores_test(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], alternative: Literal["greater", "less"]
) -> tuple[float, float]:
    """One-sided van der Waerden (normal-scores) rank test of x against y: (z, p-value).

    Each value's rank r among the N of both arms becomes the score ``Phi^-1(r / (N + 1))``
    (tied values take the score of their average rank); the statistic is the sum of x's scores,
    standardised by its exact permutation mean and variance, and referred to the normal
    distribution. `z` is positive when x tends to be larger. Like Mann-Whitney it uses only the
    ranks, so its false-alarm rate does not depend on the distribution; unlike Mann-Whitney its
    power for a shift of normal data (log-normal latencies, in log space) equals the t-test's,
    where Mann-Whitney's is 95% of it. When every value is equal there is no evidence: p is 1.

    >>> z, p = normal_scores_test(np.array([3.0, 4.0, 5.0]), np.array([0.0, 1.0, 2.0]), "greater")
    >>> round(z, 3), round(p, 4)
    (1.916, 0.0277)
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("normal_scores_test needs two non-empty samples")
    ranks, counts = _mid_ranks(np.concatenate([x, y]))
    if len(counts) == 1:
        return 0.0, 1.0
    from scipy import special  # type: ignore[import-untyped, unused-ignore]  # here: 0.45 s of every start

    n = n1 + n2
    scores = special.ndtri(ranks / (n + 1))
    centred = scores - scores.mean()
    variance = n1 * n2 / (n * (n - 1)) * float(np.dot(centred, centred))
    z = float(centred[:n1].sum()) / math.sqrt(variance)
    return z, _normal_sf(z if alternative == "greater" else -z)


def _mid_ranks(values: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """1-based ranks, each run of equal values taking the mean of the ranks it spans; and the run lengths."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    counts = np.diff(np.append(starts, len(ordered)))
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(starts + (counts + 1) / 2.0, counts)
    return ranks, counts


def hodges_lehmann(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> float:
    """The Hodges-Lehmann shift of x against y: the median of the ``len(x) * len(y)`` differences.

    It is the shift estimate that belongs to the Mann-Whitney test (the shift that makes U sit at
    its null mean). The median is found exactly without forming the differences: bisection on
    the value with a sorted-merge count, then the few differences left in the bracket are
    sorted, so it takes O((m + n) log n) per step and little memory even for 10^5 per arm.

    >>> hodges_lehmann(np.array([3.0, 5.0]), np.array([1.0, 2.0]))  # differences 1, 2, 3, 4
    2.5
    """
    xs = np.sort(np.asarray(x, dtype=np.float64))
    ys = np.sort(np.asarray(y, dtype=np.float64))
    if len(xs) == 0 or len(ys) == 0:
        raise ValueError("hodges_lehmann needs two non-empty samples")
    total = len(xs) * len(ys)
    if total % 2:
        return _kth_differences(xs, ys, (total + 1) // 2, 1)[0]
    # Both middle differences from one search: half the work of two.
    lower, upper = _kth_differences(xs, ys, total // 2, 2)
    return 0.5 * (lower + upper)


def _kth_differences(xs: npt.NDArray[np.float64], ys: npt.NDArray[np.float64], k: int, count: int) -> list[float]:
    """The k-th and, with `count` 2, the next smallest (1-based) of ``xs[i] - ys[j]``; xs and ys sorted."""
    m, n = len(xs), len(ys)
    last = k + count - 1

    def count_le(t: float) -> int:  # pairs with xs[i] - ys[j] <= t, i.e. ys[j] >= xs[i] - t
        return m * n - int(np.searchsorted(ys, xs - t, side="left").sum())

    # Bisection on the value keeps c_lo < k and c_hi >= last (c_v: differences <= v), until few
    # enough differences lie in (lo, hi] to sort them. lo starts below the smallest difference.
    lo, hi = float(xs[0] - ys[-1]), float(xs[-1] - ys[0])
    if count_le(lo) >= last:
        return [lo] * count
    # Widened by more than rounding can take back, so that no difference is <= lo and all are <= hi.
    lo, hi = lo - abs(lo) - 1.0, hi + abs(hi) + 1.0
    c_lo, c_hi = count_le(lo), count_le(hi)
    while c_hi - c_lo > m + n:
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi:  # adjacent floats: every difference in (lo, hi] equals hi
            return [hi] * count
        c = count_le(mid)
        if c >= last:
            hi, c_hi = mid, c
        elif c < k:
            lo, c_lo = mid, c
        else:  # count is 2 and exactly k differences are <= mid: the k-th is the largest of them
            first = np.searchsorted(ys, xs - mid, side="left")  # per x, the first y with a difference <= mid
            has_le, has_gt = first < n, first > 0
            return [float((xs[has_le] - ys[first[has_le]]).max()), float((xs[has_gt] - ys[first[has_gt] - 1]).min())]
    # The pairs counted at hi but not at lo: ys[j] in [xs[i] - hi, xs[i] - lo).
    start = np.searchsorted(ys, xs - hi, side="left")
    lengths = np.searchsorted(ys, xs - lo, side="left") - start
    offsets = np.cumsum(lengths) - lengths
    rows = np.repeat(np.arange(m), lengths)
    cols = np.arange(int(lengths.sum())) - np.repeat(offsets - start, lengths)
    candidates = np.sort(xs[rows] - ys[cols])
    return [float(candidates[rank - c_lo - 1]) for rank in range(k, last + 1)]


def fisher_exact_greater(errors: int, requests: int, other_errors: int, other_requests: int) -> float:
    """One-sided Fisher exact test: p of the first arm's error rate being higher than the other's.

    Given both arms' sizes and the total number of errors, the first arm's error count is
    hypergeometric under "same rate"; p is the chance of at least `errors` there. The same p as
    ``scipy.stats.fisher_exact([[errors, requests - errors], [other_errors, ...]], "greater")``.

    >>> round(fisher_exact_greater(6, 100, 0, 100), 6)  # 6 errors, all in the first arm
    0.014465
    """
    from scipy import stats  # type: ignore[import-untyped, unused-ignore]  # here: 0.5 s of every start

    total_errors = errors + other_errors
    return float(stats.hypergeom.sf(errors - 1, requests + other_requests, total_errors, requests))


@dataclass(frozen=True)
class _Test:
    """A check's test before the multiplicity correction."""

    baseline: ArmSummary
    canary: ArmSummary
    statistic: float | None
    p_value: float | None
    effect: float | None
    method: str | None
    detail: str  # the numbers a person reads: medians, rates; or why the check is inconclusive
    shift: float = 0.0  # absolute change of the tested quantity, in its unit
    no_difference: bool = False  # nothing to test: no errors in either arm


def _run_test(check: CheckInput, min_requests: int, min_values: int) -> _Test:
    if check.kind not in _KINDS:
        raise ValueError(f"check {check.name!r}: unknown kind {check.kind!r}, expected one of {_KINDS}")
    if check.bad_direction not in _DIRECTIONS:
        raise ValueError(f"check {check.name!r}: bad_direction must be one of {_DIRECTIONS}")
    if check.scope not in _SCOPES:
        raise ValueError(f"check {check.name!r}: scope must be one of {_SCOPES}")
    label = _label(check.kind, check.name)
    if check.kind == "latency":
        return _latency_test(_arm(label, "baseline", check.baseline), _arm(label, "canary", check.canary), min_requests)
    if check.kind == "error_rate":
        if not isinstance(check.baseline, ArmSample) or not isinstance(check.canary, ArmSample):
            raise ValueError(f"check {label!r}: error-rate checks take an ArmSample per arm")
        return _error_rate_test(
            _arm(label, "baseline", check.baseline), _arm(label, "canary", check.canary), min_requests
        )
    if isinstance(check.baseline, ArmSample) or isinstance(check.canary, ArmSample):
        raise ValueError(f"check {label!r}: metric checks take an array of values per arm")
    baseline = _values(label, "baseline values", check.baseline)
    canary = _values(label, "canary values", check.canary)
    return _metric_test(baseline, canary, check.bad_direction, min_values)


@dataclass(frozen=True)
class _Arm:
    latencies: npt.NDArray[np.float64]
    errors: int
    requests: int

    def summary(self, n: int) -> ArmSummary:
        p50, p95, p99 = _percentiles(self.latencies)
        rate = self.errors / self.requests if self.requests > 0 else None
        return ArmSummary(n=n, p50_ms=p50, p95_ms=p95, p99_ms=p99, error_rate=rate)


def _arm(label: str, which: str, sample: ArmSample | Values) -> _Arm:
    if not isinstance(sample, ArmSample):
        sample = ArmSample(latencies_ms=sample)
    latencies = _values(label, f"{which} latencies", sample.latencies_ms)
    if np.any(latencies < 0):
        raise ValueError(f"check {label!r}: {which} latencies contain negative values")
    requests = len(latencies) if sample.requests is None else sample.requests
    errors = sample.errors
    if int(requests) != requests or int(errors) != errors:
        raise ValueError(f"check {label!r}: {which} errors and requests must be whole counts")
    if not 0 <= errors <= requests:
        raise ValueError(f"check {label!r}: {which} has {errors} errors in {requests} requests")
    return _Arm(latencies=latencies, errors=int(errors), requests=int(requests))


def _values(label: str, what: str, values: Values) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"check {label!r}: {what} must be one-dimensional, got shape {array.shape}")
    if np.any(np.isnan(array)):
        raise ValueError(f"check {label!r}: {what} contain NaN")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"check {label!r}: {what} contain infinite values")
    return array


def _too_few(what: str, n_baseline: int, n_canary: int, minimum: int) -> str:
    return (
        f"inconclusive, too few {what}: baseline {n_baseline}, canary {n_canary} (need at least {minimum} in each arm)"
    )


def _latency_test(baseline: _Arm, canary: _Arm, min_requests: int) -> _Test:
    nb, nc = len(baseline.latencies), len(canary.latencies)
    b, c = baseline.summary(nb), canary.summary(nc)
    if min(nb, nc) < min_requests:
        return _Test(b, c, None, None, None, None, _too_few("requests", nb, nc, min_requests))
    statistic, p = normal_scores_test(canary.latencies, baseline.latencies, "greater")
    log_shift = hodges_lehmann(
        np.log(np.maximum(canary.latencies, _LOG_FLOOR_MS)), np.log(np.maximum(baseline.latencies, _LOG_FLOOR_MS))
    )
    effect = math.expm1(log_shift)
    b50, c50 = _not_none(b.p50_ms), _not_none(c.p50_ms)
    detail = (
        f"{_pct(effect)} (Hodges-Lehmann shift), p50 {_ms(c50)} ms vs {_ms(b50)} ms,"
        f" p95 {_ms(c.p95_ms)} ms vs {_ms(b.p95_ms)} ms"
    )
    return _Test(b, c, statistic, p, effect, "normal-scores", detail, shift=effect * b50)


def _error_rate_test(baseline: _Arm, canary: _Arm, min_requests: int) -> _Test:
    nb, nc = baseline.requests, canary.requests
    b, c = baseline.summary(nb), canary.summary(nc)
    if min(nb, nc) < min_requests:
        return _Test(b, c, None, None, None, None, _too_few("requests", nb, nc, min_requests))
    kb, kc = baseline.errors, canary.errors
    rb, rc = kb / nb, kc / nc
    effect = rc - rb
    detail = f"{_rate(rc)} vs {_rate(rb)} ({effect * 100:+.2f} pp; {kc}/{nc} vs {kb}/{nb})"
    if kb + kc == 0:
        # No error anywhere: nothing to test, and nothing worse about the canary.
        detail = f"no errors in either arm ({nc} vs {nb} requests)"
        return _Test(b, c, 0.0, 1.0, 0.0, "fisher-exact", detail, no_difference=True)
    return _Test(b, c, float(kc), fisher_exact_greater(kc, nc, kb, nb), effect, "fisher-exact", detail)


def _metric_test(
    baseline: npt.NDArray[np.float64], canary: npt.NDArray[np.float64], bad: Direction, min_values: int
) -> _Test:
    nb, nc = len(baseline), len(canary)
    b50, b95, b99 = _percentiles(baseline)
    c50, c95, c99 = _percentiles(canary)
    b = ArmSummary(n=nb, p50_ms=b50, p95_ms=b95, p99_ms=b99, error_rate=None)
    c = ArmSummary(n=nc, p50_ms=c50, p95_ms=c95, p99_ms=c99, error_rate=None)
    if min(nb, nc) < min_values:
        return _Test(b, c, None, None, None, None, _too_few("values", nb, nc, min_values))
    statistic, p = mann_whitney_u(canary, baseline, "greater" if bad == "increase" else "less")
    effect = _relative_change(_not_none(b50), _not_none(c50))
    detail = f"median {_num(c50)} vs {_num(b50)} ({_pct(effect)}; {bad} is bad)"
    return _Test(b, c, statistic, p, effect, "mann-whitney-u", detail)


def _beyond_tolerance(
    check: CheckInput,
    test: _Test,
    *,
    latency_tolerance: float,
    latency_min_shift_ms: float,
    error_rate_tolerance: float,
    error_rate_relative_tolerance: float,
    metric_tolerance: float,
) -> tuple[bool, str]:
    """Whether the effect is beyond tolerance, and the words saying it is within when it is not."""
    effect = _not_none(test.effect)
    if check.kind == "latency":
        if not effect > latency_tolerance:
            return False, f"within tolerance ({_pct(effect)}, tolerance +{_pct(latency_tolerance)[1:]})"
        if not test.shift > latency_min_shift_ms:
            return (
                False,
                f"within tolerance (+{_ms(test.shift)} ms at the baseline p50,"
                f" minimum shift {_ms(latency_min_shift_ms)} ms)",
            )
        return True, ""
    if check.kind == "error_rate":
        if not effect > error_rate_tolerance:
            return False, f"within tolerance ({effect * 100:+.2f} pp, tolerance +{error_rate_tolerance * 100:.2f} pp)"
        rb = _not_none(test.baseline.error_rate)
        relative = _relative_change(rb, _not_none(test.canary.error_rate))
        if not relative > error_rate_relative_tolerance:
            return (
                False,
                f"within tolerance ({_pct(relative)}, relative tolerance +{error_rate_relative_tolerance:.0%})",
            )
        return True, ""
    worse = effect if check.bad_direction == "increase" else -effect
    if not worse > metric_tolerance:
        return False, f"within tolerance ({_pct(effect)}, tolerance {metric_tolerance:.0%} in the bad direction)"
    return True, ""


def _verdict(results: list[CheckResult]) -> Judgement:
    failed = [r for r in results if r.result == "fail"]
    passed = [r for r in results if r.result == "pass"]
    inconclusive = [r for r in results if r.result == "inconclusive"]
    conclusive = len(failed) + len(passed)
    score = 100.0 * len(passed) / conclusive if conclusive else None
    if failed:
        return Judgement("FAIL", score, "FAIL: " + "; ".join(r.reason for r in failed), results)
    blocking = [r for r in inconclusive if r.scope == "service"]
    if blocking or not conclusive:
        reasons = blocking or inconclusive
        return Judgement("INCONCLUSIVE", score, "INCONCLUSIVE: " + "; ".join(r.reason for r in reasons), results)
    reason = f"PASS: {len(passed)} of {conclusive} conclusive checks passed"
    if inconclusive:
        reason += "; inconclusive: " + ", ".join(r.label for r in inconclusive)
    return Judgement("PASS", score, reason, results)


def _percentiles(values: npt.NDArray[np.float64]) -> tuple[float | None, float | None, float | None]:
    if len(values) == 0:
        return None, None, None
    p50, p95, p99 = np.percentile(values, [50.0, 95.0, 99.0])
    return float(p50), float(p95), float(p99)


def _relative_change(before: float, after: float) -> float:
    """(after - before) / |before|; an increase from zero is +inf, a decrease from zero -inf."""
    if before == 0.0:
        return 0.0 if after == 0.0 else math.copysign(math.inf, after)
    return (after - before) / abs(before)


def _normal_sf(z: float) -> float:
    # erfc keeps its relative accuracy far into the tail, unlike 1 - cdf.
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _label(kind: str, name: str) -> str:
    if kind == "latency":
        return f"latency of {name}"
    if kind == "error_rate":
        return f"error rate of {name}"
    return f"metric {name}"


def _json_float(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


def _not_none(x: float | None) -> float:
    if x is None:
        raise AssertionError("value expected")
    return x


def _p(p: float) -> str:
    return f"{p:.2g}"


def _pct(x: float) -> str:
    if not math.isfinite(x):
        return "+inf%" if x > 0 else "-inf%"
    return f"{x:+.0%}" if abs(x) >= 0.1 else f"{x:+.1%}"


def _rate(x: float) -> str:
    return f"{x:.2%}"


def _ms(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"
