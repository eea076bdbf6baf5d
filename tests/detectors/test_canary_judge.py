"""The canary judge on generated arms with fixed seeds: verdicts, tolerances, multiplicity, edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from vigil.detectors.canary_judge import (
    ArmSample,
    CheckInput,
    CheckResult,
    fisher_exact_greater,
    hodges_lehmann,
    holm,
    judge,
    mann_whitney_u,
    normal_scores_test,
)

MEDIAN_MS = 180.0
OPERATIONS = ["GET /checkout", "GET /cart", "POST /login"]


def arm(rng: np.random.Generator, n: int, *, slower: float = 1.0, error_rate: float = 0.0) -> ArmSample:
    """`n` lognormal latencies around MEDIAN_MS times `slower`, with binomial errors."""
    latencies = rng.lognormal(math.log(MEDIAN_MS), 0.5, n) * slower
    return ArmSample(latencies, errors=int(rng.binomial(n, error_rate)), requests=n)


def service_checks(
    rng: np.random.Generator, n: int, *, slow_operation: str | None = None, slower: float = 1.0
) -> list[CheckInput]:
    """Latency and error-rate checks for the service and each operation."""
    checks = []
    for name, scope in [("shop", "service"), *((op, "operation") for op in OPERATIONS)]:
        factor = slower if name == slow_operation else 1.0
        baseline, canary = arm(rng, n, error_rate=0.01), arm(rng, n, slower=factor, error_rate=0.01)
        checks.append(CheckInput(name, "latency", baseline, canary, scope=scope))  # type: ignore[arg-type]
        checks.append(CheckInput(name, "error_rate", baseline, canary, scope=scope))  # type: ignore[arg-type]
    return checks


def by_label(checks: list[CheckResult]) -> dict[str, CheckResult]:
    return {c.label: c for c in checks}


def test_identical_distributions_pass() -> None:
    judgement = judge(service_checks(np.random.default_rng(1), 2000))

    assert judgement.verdict == "PASS"
    assert judgement.score == 100.0
    assert all(c.result == "pass" for c in judgement.checks)
    assert judgement.reason == "PASS: 8 of 8 conclusive checks passed"


def test_fifty_percent_slower_operation_fails_its_latency_check_by_name() -> None:
    checks = service_checks(np.random.default_rng(2), 2000, slow_operation="GET /checkout", slower=1.5)
    judgement = judge(checks)
    results = by_label(judgement.checks)
    checkout = results["latency of GET /checkout"]

    assert judgement.verdict == "FAIL"
    assert checkout.result == "fail"
    assert checkout.effect == pytest.approx(0.5, abs=0.06)
    assert checkout.p_value is not None and checkout.p_value < 1e-100
    assert checkout.adjusted_p_value == pytest.approx(min(1.0, 8 * checkout.p_value))  # the smallest of 8
    assert judgement.reason.startswith("FAIL: latency of GET /checkout: +49% (Hodges-Lehmann shift), p50 ")
    assert "p = " in judgement.reason
    assert [c.label for c in judgement.checks if c.result == "fail"] == ["latency of GET /checkout"]
    assert results["latency of GET /cart"].result == "pass"
    assert judgement.score == 100.0 * 7 / 8


@pytest.mark.parametrize("per_arm", [20_000, 100_000])
def test_a_small_significant_shift_passes_because_of_the_tolerance(per_arm: int) -> None:
    rng = np.random.default_rng(3)
    check = CheckInput("shop", "latency", arm(rng, per_arm), arm(rng, per_arm, slower=1.02))

    tolerant = judge([check])
    (result,) = tolerant.checks
    assert result.p_value is not None and result.p_value < 1e-3  # clearly significant
    assert result.effect == pytest.approx(0.02, abs=0.01)
    assert result.result == "pass"
    assert "within tolerance (+2" in result.reason and "tolerance +5.0%)" in result.reason
    assert tolerant.verdict == "PASS"

    assert judge([check], latency_tolerance=0.0).verdict == "FAIL"


def test_the_latency_effect_is_the_hodges_lehmann_ratio() -> None:
    rng = np.random.default_rng(11)
    baseline, canary = arm(rng, 300), arm(rng, 200, slower=1.3)
    (result,) = judge([CheckInput("shop", "latency", baseline, canary)]).checks

    logs = np.log(np.asarray(canary.latencies_ms))[:, None] - np.log(np.asarray(baseline.latencies_ms))[None, :]
    assert result.effect == pytest.approx(math.expm1(float(np.median(logs))), rel=1e-12)
    assert result.effect == pytest.approx(0.3, abs=0.08)
    assert result.method == "normal-scores"
    assert result.statistic is not None and result.statistic > 3


def test_the_first_check_to_fail_is_held_to_half_of_alpha_with_two_checks() -> None:
    """The default analysis of a service: latency and error rate, one Holm family at alpha 0.01."""
    rng = np.random.default_rng(12)
    baseline = ArmSample(rng.lognormal(0.0, 0.5, 400), errors=4, requests=400)
    p_of = {}
    for slower in np.linspace(1.0, 1.2, 81):
        canary = ArmSample(np.asarray(baseline.latencies_ms)[::-1] * slower, errors=4, requests=400)
        (latency,) = judge([CheckInput("shop", "latency", baseline, canary)]).checks
        p_of[float(slower)] = (latency.p_value, canary)
    # A canary whose latency p lies between alpha / 2 and alpha: alone it fails, beside the error check it passes.
    slower, (p, canary) = next((s, v) for s, v in p_of.items() if v[0] is not None and 0.005 < v[0] <= 0.01)
    alone = judge([CheckInput("shop", "latency", baseline, canary)])
    both = judge([CheckInput("shop", "latency", baseline, canary), CheckInput("shop", "error_rate", baseline, canary)])
    assert alone.verdict == "FAIL"
    assert both.verdict == "PASS"
    assert both.checks[0].adjusted_p_value == pytest.approx(2 * p)


def test_latency_min_shift_guards_fast_endpoints() -> None:
    rng = np.random.default_rng(4)
    fast = CheckInput("GET /health", "latency", rng.lognormal(0.0, 0.2, 500), rng.lognormal(0.0, 0.2, 500) * 1.3)

    assert judge([fast]).verdict == "FAIL"  # +30% of a 1 ms median
    relaxed = judge([fast], latency_min_shift_ms=5.0)
    assert relaxed.verdict == "PASS"
    assert "minimum shift 5" in relaxed.checks[0].reason


def test_error_rate_of_5_percent_against_0_1_percent_fails() -> None:
    baseline = ArmSample(errors=2, requests=2000)
    canary = ArmSample(errors=100, requests=2000)
    judgement = judge([CheckInput("GET /checkout", "error_rate", baseline, canary)])
    (check,) = judgement.checks

    reference = stats.fisher_exact([[100, 1900], [2, 1998]], alternative="greater")
    assert check.method == "fisher-exact"
    assert check.statistic == 100.0
    assert check.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert check.p_value < 1e-20
    assert check.effect == pytest.approx(0.049, rel=1e-12)
    assert check.baseline.error_rate == 0.001 and check.canary.error_rate == 0.05
    assert check.result == "fail"
    assert judgement.verdict == "FAIL"
    assert judgement.reason.startswith("FAIL: error rate of GET /checkout: 5.00% vs 0.10% (+4.90 pp; 100/2000")


@pytest.mark.parametrize("seed", range(5))
def test_fisher_exact_greater_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(20):
        n1, n2 = (int(n) for n in rng.integers(1, 3000, 2))
        k1, k2 = int(rng.integers(0, n1 + 1)), int(rng.integers(0, min(n2, 40) + 1))
        reference = stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="greater").pvalue
        assert fisher_exact_greater(k1, n1, k2, n2) == pytest.approx(reference, rel=1e-9, abs=1e-300)


def test_small_error_counts_are_tested_exactly() -> None:
    # Every error in the canary: p is the chance that all of them land there, C(100, k) / C(200, k).
    six = CheckInput("shop", "error_rate", ArmSample(errors=0, requests=100), ArmSample(errors=6, requests=100))
    (result,) = judge([six]).checks
    assert result.method == "fisher-exact"
    assert result.statistic == 6.0
    assert result.p_value == pytest.approx(stats.hypergeom.sf(5, 200, 6, 100), rel=1e-9)
    assert result.p_value == pytest.approx(math.comb(100, 6) / math.comb(200, 6), rel=1e-9)
    assert result.result == "pass"  # p = 0.014: not enough at alpha 0.01
    assert judge([six], alpha=0.05).verdict == "FAIL"

    eight = CheckInput("shop", "error_rate", ArmSample(errors=0, requests=100), ArmSample(errors=8, requests=100))
    (result,) = judge([eight]).checks
    assert result.p_value == pytest.approx(math.comb(100, 8) / math.comb(200, 8), rel=1e-9)
    assert result.result == "fail"


def test_error_rate_tolerances() -> None:
    # 0.4 percentage points more errors is significant at this volume but within 0.5 pp.
    check = CheckInput(
        "shop", "error_rate", ArmSample(errors=1000, requests=100_000), ArmSample(errors=1400, requests=100_000)
    )
    (result,) = judge([check]).checks
    assert result.p_value is not None and result.p_value < 1e-12
    assert result.result == "pass" and "within tolerance" in result.reason
    assert judge([check], error_rate_tolerance=0.001).verdict == "FAIL"
    assert judge([check], error_rate_tolerance=0.001, error_rate_relative_tolerance=0.5).verdict == "PASS"


def test_zero_errors_in_both_arms_pass() -> None:
    (result,) = judge([CheckInput("shop", "error_rate", ArmSample(requests=500), ArmSample(requests=800))]).checks

    assert result.result == "pass"
    assert result.p_value == 1.0 and result.effect == 0.0
    assert result.reason == "error rate of shop: no errors in either arm (800 vs 500 requests)"


def test_too_few_requests_is_inconclusive_with_the_counts() -> None:
    rng = np.random.default_rng(5)
    baseline, canary = arm(rng, 49, error_rate=0.5), arm(rng, 500, slower=3.0, error_rate=0.5)
    judgement = judge(
        [CheckInput("shop", "latency", baseline, canary), CheckInput("shop", "error_rate", baseline, canary)]
    )

    assert judgement.verdict == "INCONCLUSIVE"
    assert judgement.score is None
    for check in judgement.checks:
        assert check.result == "inconclusive"
        assert check.p_value is None and check.adjusted_p_value is None and check.effect is None
        assert "baseline 49, canary 500" in check.reason and "at least 50" in check.reason
    assert judgement.reason.startswith("INCONCLUSIVE: latency of shop: inconclusive, too few requests: baseline 49")
    assert judge([CheckInput("shop", "latency", baseline, canary)], min_requests=40).verdict == "FAIL"


def test_empty_arms_and_zero_requests_are_inconclusive() -> None:
    rng = np.random.default_rng(6)
    judgement = judge(
        [
            CheckInput("shop", "latency", arm(rng, 100), ArmSample()),
            CheckInput("shop", "error_rate", ArmSample(requests=0), ArmSample(errors=3, requests=100)),
            CheckInput("cpu", "metric", [], [1.0, 2.0]),
        ]
    )

    latency, errors, metric = judgement.checks
    assert latency.canary.n == 0 and latency.canary.p50_ms is None and latency.canary.error_rate is None
    assert "canary 0" in latency.reason
    assert errors.baseline.n == 0 and errors.baseline.error_rate is None and "baseline 0" in errors.reason
    assert metric.result == "inconclusive" and "too few values: baseline 0, canary 2" in metric.reason
    assert judgement.verdict == "INCONCLUSIVE"


def test_all_latencies_equal_is_no_evidence() -> None:
    check = CheckInput("shop", "latency", np.full(100, 12.0), np.full(80, 12.0))
    (result,) = judge([check]).checks

    assert result.statistic == 0.0
    assert result.p_value == 1.0 and result.effect == 0.0
    assert result.result == "pass"


def test_zero_millisecond_latencies_have_a_ratio() -> None:
    rng = np.random.default_rng(13)
    baseline = np.round(rng.lognormal(0.0, 1.0, 300))  # whole milliseconds: a third are 0
    canary = np.round(rng.lognormal(0.0, 1.0, 300) * 3.0)
    (result,) = judge([CheckInput("GET /health", "latency", baseline, canary)]).checks

    assert np.count_nonzero(baseline == 0) > 50
    assert result.effect is not None and math.isfinite(result.effect) and result.effect > 0.5
    assert result.result == "fail"


def normal_scores_reference(x: np.ndarray, y: np.ndarray) -> float:
    """z of the van der Waerden test from its textbook definition, with SciPy's mid-ranks."""
    values = np.concatenate([x, y])
    scores = stats.norm.ppf(stats.rankdata(values) / (len(values) + 1))
    m, n, big_n = len(x), len(y), len(values)
    mean = m * scores.mean()
    variance = m * n / (big_n * (big_n - 1)) * float(np.sum((scores - scores.mean()) ** 2))
    return float((scores[:m].sum() - mean) / math.sqrt(variance))


def test_heavily_tied_latencies_are_ranked_with_mid_ranks_and_still_fail_a_real_regression() -> None:
    rng = np.random.default_rng(7)
    baseline = np.round(rng.lognormal(math.log(20.0), 0.3, 400))  # whole milliseconds: many ties
    canary = np.round(rng.lognormal(math.log(20.0), 0.3, 400) * 1.5)
    (result,) = judge([CheckInput("shop", "latency", baseline, canary)]).checks
    z = normal_scores_reference(canary, baseline)

    assert result.statistic == pytest.approx(z, rel=1e-9)
    assert result.p_value == pytest.approx(stats.norm.sf(z), rel=1e-9)
    assert result.result == "fail"


@pytest.mark.parametrize("seed", range(6))
def test_normal_scores_test_matches_its_definition_and_permutation_moments(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n1, n2 = (int(n) for n in rng.integers(3, 120, 2))
    x = np.round(rng.normal(0.3, 1.0, n1), seed % 3)
    y = np.round(rng.normal(0.0, 1.0, n2), seed % 3)
    z, p = normal_scores_test(x, y, "greater")
    assert z == pytest.approx(normal_scores_reference(x, y), rel=1e-9)
    assert p == pytest.approx(stats.norm.sf(z), rel=1e-9)
    z_less, p_less = normal_scores_test(x, y, "less")
    assert z_less == z and p_less == pytest.approx(stats.norm.cdf(z), rel=1e-9)

    # Under random relabelling the standardised statistic has mean 0 and variance 1.
    values = np.concatenate([x, y])
    draws = [normal_scores_test(*np.split(rng.permutation(values), [n1]), "greater")[0] for _ in range(400)]
    assert abs(float(np.mean(draws))) < 0.25 and 0.75 < float(np.var(draws)) < 1.3


@pytest.mark.parametrize("seed", range(8))
def test_hodges_lehmann_is_the_median_of_all_differences(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n1, n2 = (int(n) for n in rng.integers(1, 150, 2))
    x = np.round(rng.lognormal(0.2, 1.0, n1), seed % 3)  # 0 decimals: many ties
    y = np.round(rng.lognormal(0.0, 1.0, n2), seed % 3)
    assert hodges_lehmann(x, y) == pytest.approx(float(np.median(x[:, None] - y[None, :])), abs=1e-12)
    assert hodges_lehmann(np.full(5, 3.0), np.full(7, 3.0)) == 0.0
    with pytest.raises(ValueError, match="non-empty"):
        hodges_lehmann(x, np.array([]))


def test_hodges_lehmann_across_a_gap_between_the_two_middle_differences() -> None:
    # Half the canary near 0 and half near 1,000: the 2,000th of the 4,000 differences is the
    # largest near 0 and the 2,001st the smallest near 1,000, so the search splits them.
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(0, 1, 50), rng.uniform(1000, 1001, 50)])
    y = rng.uniform(0, 1, 40)
    differences = np.sort((x[:, None] - y[None, :]).ravel())
    assert differences[1999] < 1 and differences[2000] > 999
    assert hodges_lehmann(x, y) == 0.5 * (float(differences[1999]) + float(differences[2000]))


@pytest.mark.parametrize("seed", range(6))
def test_mann_whitney_u_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n1, n2 = (int(n) for n in rng.integers(3, 120, 2))
    decimals = seed % 3  # 0 decimals: heavy ties; 2: almost none
    x = np.round(rng.normal(0.3, 1.0, n1), decimals)
    y = np.round(rng.normal(0.0, 1.0, n2), decimals)
    for alternative in ("greater", "less"):
        u, p = mann_whitney_u(x, y, alternative)
        reference = stats.mannwhitneyu(x, y, alternative=alternative)
        assert u == reference.statistic
        assert p == pytest.approx(reference.pvalue, rel=1e-9, abs=1e-300)


def test_mann_whitney_u_small_arms_without_ties_are_exact() -> None:
    x, y = np.array([5.0, 6.0, 7.0, 8.0]), np.array([1.0, 2.0, 3.0, 4.0, 4.5])
    u, p = mann_whitney_u(x, y, "greater")
    assert (u, p) == (20.0, 1 / math.comb(9, 4))


def test_metric_checks_fail_only_in_the_bad_direction() -> None:
    rng = np.random.default_rng(8)
    baseline = rng.normal(1000.0, 50.0, 120)  # say requests per second per instance
    dropped = rng.normal(700.0, 50.0, 120)

    falls = judge([CheckInput("throughput", "metric", baseline, dropped, bad_direction="decrease")])
    assert falls.verdict == "FAIL"
    assert falls.checks[0].effect == pytest.approx(-0.3, abs=0.03)
    assert falls.reason.startswith("FAIL: metric throughput: median 7")
    assert judge([CheckInput("throughput", "metric", baseline, dropped)]).verdict == "PASS"
    assert judge([CheckInput("cpu", "metric", dropped, baseline)]).verdict == "FAIL"
    assert judge([CheckInput("cpu", "metric", baseline, baseline * 1.05)]).verdict == "PASS"  # within 10%


def test_false_fail_rate_under_the_null_with_20_checks_stays_at_alpha() -> None:
    """300 analyses of 20 checks where canary and baseline are the same: how often does any fail?

    Tolerances are zero so that only the multiplicity correction stands between noise and a
    FAIL. Holm keeps the family-wise rate at alpha; uncorrected, about 1 - 0.95**20 = 64% of
    analyses would have a false FAIL.
    """
    rng = np.random.default_rng(2024)
    alpha, analyses = 0.05, 300
    holm_fails = raw_fails = 0
    for _ in range(analyses):
        checks = []
        for i in range(8):
            checks.append(CheckInput(f"op{i}", "latency", arm(rng, 150), arm(rng, 150)))
        for i in range(4):
            checks.append(
                CheckInput(f"op{i}", "error_rate", arm(rng, 3000, error_rate=0.02), arm(rng, 3000, error_rate=0.02))
            )
        for i in range(4, 6):  # a few low error counts: Fisher's test
            checks.append(
                CheckInput(f"op{i}", "error_rate", arm(rng, 1000, error_rate=0.003), arm(rng, 1000, error_rate=0.003))
            )
        for i in range(6):
            checks.append(CheckInput(f"m{i}", "metric", rng.normal(50.0, 5.0, 60), rng.normal(50.0, 5.0, 60)))
        assert len(checks) == 20
        judgement = judge(checks, alpha=alpha, latency_tolerance=0.0, error_rate_tolerance=0.0, metric_tolerance=0.0)
        holm_fails += judgement.verdict == "FAIL"
        raw_fails += any(
            c.p_value is not None and c.effect is not None and c.p_value <= alpha and c.effect > 0
            for c in judgement.checks
        )

    holm_rate, raw_rate = holm_fails / analyses, raw_fails / analyses
    assert holm_rate <= alpha + 0.02  # 0.02 is 1.6 binomial standard errors at n = 300
    assert raw_rate >= 0.45  # what the same checks would do without correction


def test_holm_adjustment() -> None:
    assert holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    assert holm([0.5, 0.001]) == [0.5, 0.002]
    assert holm([0.02, 0.03]) == [0.04, 0.04]  # monotone: never below a smaller p's adjustment
    assert holm([0.9, 0.4]) == [0.9, 0.8]
    assert holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


def test_verdict_and_score_logic() -> None:
    rng = np.random.default_rng(9)
    ok = [
        CheckInput("shop", "latency", arm(rng, 300), arm(rng, 300)),
        CheckInput("GET /a", "latency", arm(rng, 300), arm(rng, 300), scope="operation"),
        CheckInput("GET /b", "latency", arm(rng, 300), arm(rng, 300), scope="operation"),
    ]
    bad = CheckInput("GET /c", "latency", arm(rng, 300), arm(rng, 300, slower=2.0), scope="operation")
    rare = CheckInput("GET /rare", "latency", arm(rng, 10), arm(rng, 12), scope="operation")
    quiet_service = CheckInput("shop", "error_rate", ArmSample(requests=30), ArmSample(requests=30))

    failing = judge([*ok, bad])
    assert (failing.verdict, failing.score) == ("FAIL", 75.0)

    # A failure wins over inconclusive checks, even the service's.
    assert judge([*ok, bad, quiet_service]).verdict == "FAIL"

    # An inconclusive operation does not block; it is named in the reason and left out of the score.
    passing = judge([*ok, rare])
    assert (passing.verdict, passing.score) == ("PASS", 100.0)
    assert passing.reason == "PASS: 3 of 3 conclusive checks passed; inconclusive: latency of GET /rare"

    # An inconclusive service check does block.
    blocked = judge([*ok, quiet_service])
    assert (blocked.verdict, blocked.score) == ("INCONCLUSIVE", 100.0)
    assert blocked.reason.startswith("INCONCLUSIVE: error rate of shop: inconclusive, too few requests: baseline 30")

    # Nothing conclusive at all: inconclusive whatever the scopes.
    assert judge([rare]).verdict == "INCONCLUSIVE"


def test_to_dict_has_the_documented_shape_and_is_json_ready() -> None:
    rng = np.random.default_rng(10)
    judgement = judge(
        [
            CheckInput("shop", "latency", arm(rng, 200, error_rate=0.01), arm(rng, 200, error_rate=0.01)),
            # A baseline median of 0 makes the relative effect infinite: JSON gets null.
            CheckInput("queue", "metric", np.zeros(60), np.ones(60)),
        ]
    )
    data = json.loads(json.dumps(judgement.to_dict(), allow_nan=False))

    assert set(data) == {"verdict", "score", "reason", "checks"}
    latency, metric = data["checks"]
    assert {"name", "baseline", "canary", "statistic", "p_value", "effect", "result"} <= set(latency)
    assert set(latency["baseline"]) == {"n", "p50_ms", "p95_ms", "p99_ms", "error_rate"}
    assert latency["name"] == "shop" and latency["baseline"]["n"] == 200
    assert latency["baseline"]["p50_ms"] == pytest.approx(MEDIAN_MS, rel=0.15)
    assert latency["baseline"]["error_rate"] == judgement.checks[0].baseline.error_rate
    assert metric["effect"] is None and judgement.checks[1].effect == math.inf
    assert metric["result"] == "fail" and metric["baseline"]["error_rate"] is None


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (CheckInput("GET /checkout", "latency", [1.0, math.nan], [1.0]), "latency of GET /checkout.*NaN"),
        (CheckInput("GET /checkout", "latency", [1.0], [math.inf]), "canary latencies contain infinite"),
        (CheckInput("shop", "latency", [-1.0], [1.0]), "negative"),
        (CheckInput("cpu", "metric", [1.0, math.nan], [1.0]), "metric cpu.*NaN"),
        (CheckInput("shop", "error_rate", ArmSample(errors=5, requests=4), ArmSample(requests=4)), "5 errors in 4"),
        (CheckInput("shop", "error_rate", [1.0], [1.0]), "ArmSample per arm"),
        (CheckInput("cpu", "metric", ArmSample(), [1.0]), "array of values"),
        (CheckInput("shop", "latency", np.ones((2, 2)), [1.0]), "one-dimensional"),
        (CheckInput("shop", "throughput", [1.0], [1.0]), "unknown kind"),  # type: ignore[arg-type]
        (CheckInput("cpu", "metric", [1.0], [1.0], bad_direction="up"), "bad_direction"),  # type: ignore[arg-type]
    ],
)
def test_invalid_input_is_rejected_naming_the_check(check: CheckInput, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        judge([check])


def test_invalid_arguments_are_rejected() -> None:
    check = CheckInput("shop", "latency", [1.0], [1.0])
    with pytest.raises(ValueError, match="at least one check"):
        judge([])
    with pytest.raises(ValueError, match="duplicate check: latency of shop"):
        judge([check, check])
    with pytest.raises(ValueError, match="alpha"):
        judge([check], alpha=1.5)
    with pytest.raises(ValueError, match="min_requests"):
        judge([check], min_requests=0)
    with pytest.raises(ValueError, match="tolerances"):
        judge([check], latency_tolerance=-0.1)
