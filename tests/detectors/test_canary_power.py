"""The canary judge's error rates by Monte-Carlo, beside Kayenta's default judge on the same data.

Every condition of the product's requirement grid runs 1,000 times (seed 2024, the same runs
``python -m tests.bench.canary_power`` prints), each run one analysis of a service with Vigil's
default checks (whole-service latency and error rate) under `judge`'s defaults: log-normal
latencies with sigma 0.5, Bernoulli errors at 1% unless the condition says otherwise. Vigil's
rates are asserted against the requirements themselves, with no allowance: no difference, at
most 1% FAIL at 50, 500 and 2,000 requests per arm; latency +50% at 50 per arm, at least 90%
FAIL; +25% at 500, 99%; +10% at 500, 60%; errors 1% -> 6% at 500 per arm, 95%; 1% -> 3% at
2,000, 95%; below the minimum sample, INCONCLUSIVE every time.

The same runs go through the re-implementation of Kayenta's ``NetflixACAJudge`` in
`tests.detectors.kayenta_reference`, whose rates are asserted to lie near Kayenta's published
behaviour (it flags +50% at 50 per arm about 77% of the time, +10% at 500 about 47%, and an
error rate it sees as one value per arm almost never). The first tests check the reference
itself against a literal port of Kayenta's root-finding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats

from tests.bench.canary_power import BELOW_MINIMUM, ERRORS, LATENCY, NO_DIFFERENCE, Condition, Tally, simulate
from tests.detectors import kayenta_reference as kayenta

RUNS = 1000
SEED = 2024


# --- the reference -------------------------------------------------------------------------


def kayenta_wilcoxon_diff(x: np.ndarray, y: np.ndarray, mu: float, quantile: float) -> float:
    """``wilcoxonDiff`` of Kayenta's ``MannWhitney.calculateConfidenceInterval``, line for line."""
    m, n = len(x), len(y)
    ranks = stats.rankdata(np.concatenate([x - mu, y]))  # NaturalRanking, ties AVERAGE
    _, ties = np.unique(ranks, return_counts=True)
    dz = ranks[:m].sum() - m * (m + 1) / 2 - m * n / 2
    correction = np.sign(dz) * 0.5
    sigma = math.sqrt(
        m * n / 12 * ((m + n + 1) - float(np.sum(ties.astype(float) ** 3 - ties)) / ((m + n) * (m + n - 1)))
    )
    return float((dz - correction) / sigma - quantile)


def kayenta_find_root(x: np.ndarray, y: np.ndarray, quantile: float) -> float:
    """``findRoot``: an end of the range when the score does not cross there, else a root (bisection)."""
    lo, hi = float(x.min() - y.max()), float(x.max() - y.min())
    if kayenta_wilcoxon_diff(x, y, lo, quantile) <= 0:
        return lo
    if kayenta_wilcoxon_diff(x, y, hi, quantile) >= 0:
        return hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if kayenta_wilcoxon_diff(x, y, mid, quantile) > 0:
            lo = mid
        else:
            hi = mid
    return hi


@pytest.mark.parametrize("seed", range(8))
def test_the_reference_interval_is_kayentas_root_finding(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m, n = (int(k) for k in rng.integers(3, 60, 2))
    canary = rng.lognormal(4.6, 0.5, m) * float(rng.choice([0.8, 1.0, 1.3]))
    baseline = rng.lognormal(4.6, 0.5, n)
    z = float(stats.norm.ppf(0.99))  # confLevel 0.98

    interval = kayenta.mann_whitney_interval(canary, baseline)
    assert interval.lower == pytest.approx(kayenta_find_root(canary, baseline, z), abs=1e-7)
    assert interval.upper == pytest.approx(kayenta_find_root(canary, baseline, -z), abs=1e-7)
    differences = np.sort((canary[:, None] - baseline[None, :]).ravel())
    assert interval.estimate == pytest.approx(float(np.median(differences)), abs=1e-9)
    # The estimate's root (quantile 0) lies where the score is 0, around the median difference.
    assert kayenta_wilcoxon_diff(canary, baseline, interval.estimate, 0.0) == 0.0


@pytest.mark.parametrize("seed", range(12))
def test_the_reference_classifier_decides_as_the_interval_says(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    m, n = (int(k) for k in rng.integers(5, 200, 2))
    ratio = float(rng.choice([0.7, 0.9, 1.0, 1.1, 1.4]))
    canary, baseline = rng.lognormal(4.6, 0.5, m) * ratio, rng.lognormal(4.6, 0.5, n)

    interval = kayenta.mann_whitney_interval(canary, baseline)
    bound = 0.25 * abs(interval.estimate)
    mean_ratio = canary.mean() / baseline.mean()
    expected = (
        "High"
        if interval.lower > bound and mean_ratio >= 1.0
        else "Low"
        if interval.upper < -bound and mean_ratio <= 1.0
        else "Pass"
    )
    assert kayenta.classify_metric(baseline, canary).label == expected
    if expected == "Low":
        assert kayenta.classify_metric(baseline, canary, direction="increase").label == "Pass"


def test_the_reference_flags_big_shifts_both_ways_and_never_an_error_rate_seen_once() -> None:
    rng = np.random.default_rng(7)
    baseline = rng.lognormal(4.6, 0.5, 300)
    assert kayenta.classify_metric(baseline, baseline * 1.5).label == "High"
    assert kayenta.classify_metric(baseline, baseline / 1.5).label == "Low"
    assert kayenta.classify_metric(baseline, rng.permutation(baseline)).label == "Pass"  # identical
    assert kayenta.classify_metric(np.array([]), baseline).label == "Nodata"
    assert kayenta.classify_metric(np.full(5, 2.0), np.full(9, 2.0)).label == "Pass"
    # One error rate per arm: 1% against 60% is never High, the same rate passes.
    assert kayenta.classify_metric(np.array([0.01]), np.array([0.6])).label == "Error"
    assert kayenta.classify_metric(np.array([0.01]), np.array([0.01])).label == "Pass"


def test_the_reference_score_and_verdict() -> None:
    passing, high, low = kayenta.Classification("Pass"), kayenta.Classification("High"), kayenta.Classification("Low")
    assert kayenta.score([passing] * 9 + [high]) == 90.0
    assert kayenta.classify_score(90.0) == "PASS"
    assert kayenta.score([passing] * 4 + [low]) == 80.0
    assert kayenta.classify_score(80.0) == "MARGINAL"
    assert kayenta.classify_score(74.9) == "FAIL"
    # Nodata and Error are left out; a critical failure scores 0.
    assert kayenta.score([passing, kayenta.Classification("Nodata"), kayenta.Classification("Error")]) == 100.0
    assert kayenta.score([passing] * 9 + [kayenta.Classification("High", critical=True)]) == 0.0

    rng = np.random.default_rng(8)
    base = rng.lognormal(4.6, 0.5, 200)
    metrics = [kayenta.MetricPair(f"m{i}", base, base * (1.6 if i == 0 else 1.0)) for i in range(10)]
    assert kayenta.judge(metrics).verdict == "PASS"  # one of ten High: 90
    critical = [kayenta.MetricPair("m0", base, base * 1.6, critical=True), *metrics[1:]]
    assert kayenta.judge(critical).score == 0.0


# --- the grid ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    condition: Condition
    vigil: Callable[[Tally], bool]
    vigil_says: str
    kayenta: Callable[[Tally], bool]
    kayenta_says: str


def fail_at_most(rate: float) -> Callable[[Tally], bool]:
    return lambda t: t.vigil_rate("FAIL") <= rate


def fail_at_least(rate: float) -> Callable[[Tally], bool]:
    return lambda t: t.vigil_rate("FAIL") >= rate


def kayenta_latency_high(lo: float, hi: float) -> Callable[[Tally], bool]:
    return lambda t: lo <= t.kayenta_high_rate("latency") <= hi


def kayenta_misses_errors(t: Tally) -> bool:
    return t.kayenta_high_rate("error_rate") == 0.0 and t.kayenta_rate("FAIL") <= 0.05


GRID = [
    *(
        Expectation(c, fail_at_most(0.01), "false FAIL <= 1%", lambda t: t.kayenta_rate("FAIL") <= 0.02, "FAIL <= 2%")
        for c in NO_DIFFERENCE
    ),
    Expectation(LATENCY[0], fail_at_least(0.90), "FAIL >= 90%", kayenta_latency_high(0.65, 0.88), "High 65-88%"),
    Expectation(LATENCY[1], fail_at_least(0.99), "FAIL >= 99%", kayenta_latency_high(0.95, 1.0), "High >= 95%"),
    Expectation(LATENCY[2], fail_at_least(0.60), "FAIL >= 60%", kayenta_latency_high(0.35, 0.59), "High 35-59%"),
    Expectation(ERRORS[0], fail_at_least(0.95), "FAIL >= 95%", kayenta_misses_errors, "error rate never High"),
    Expectation(ERRORS[1], fail_at_least(0.95), "FAIL >= 95%", kayenta_misses_errors, "error rate never High"),
    Expectation(
        BELOW_MINIMUM,
        lambda t: t.vigil_rate("INCONCLUSIVE") == 1.0,
        "INCONCLUSIVE always",
        lambda t: t.kayenta_rate("PASS") + t.kayenta_rate("FAIL") == 1.0,  # Kayenta has no minimum
        "always PASS or FAIL",
    ),
]


def describe(t: Tally) -> str:
    return (
        f"Vigil FAIL {t.vigil_rate('FAIL'):.1%} PASS {t.vigil_rate('PASS'):.1%}"
        f" INCONCLUSIVE {t.vigil_rate('INCONCLUSIVE'):.1%} (failed checks {dict(t.vigil_failed)});"
        f" Kayenta FAIL {t.kayenta_rate('FAIL'):.1%} MARGINAL {t.kayenta_rate('MARGINAL'):.1%}"
        f" PASS {t.kayenta_rate('PASS'):.1%}, latency High {t.kayenta_high_rate('latency'):.1%},"
        f" error rate High {t.kayenta_high_rate('error_rate'):.1%}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("expectation", GRID, ids=[e.condition.name for e in GRID])
def test_vigil_meets_the_requirement_and_kayenta_behaves_as_published(expectation: Expectation) -> None:
    tally = simulate(expectation.condition, RUNS, SEED)
    assert tally.runs == RUNS
    assert expectation.vigil(tally), f"{expectation.condition.name}: want {expectation.vigil_says}; {describe(tally)}"
    assert expectation.kayenta(tally), (
        f"{expectation.condition.name}: reference Kayenta should have {expectation.kayenta_says}; {describe(tally)}"
    )
    if expectation.condition in (*LATENCY, *ERRORS):
        assert tally.vigil_rate("FAIL") >= tally.kayenta_rate("FAIL"), describe(tally)
