"""Canary verdicts by Monte-Carlo: Vigil's judge beside a re-implementation of Kayenta's default judge.

    .venv/bin/python -m tests.bench.canary_power [--runs 1000] [--seed 2024]

Each run of a condition is one canary analysis of a service with the two checks Vigil runs by
default, the whole-service latency and error rate, judged by `vigil.detectors.canary_judge.judge`
with its defaults; and the same data judged by Kayenta's ``NetflixACAJudge`` as reproduced in
``tests/detectors/kayenta_reference.py`` (a latency metric holding the request latencies, and an
error-rate metric holding one value per arm, the rate over the window).

Data: request latencies are log-normal with median 100 ms and sigma 0.5 in log space, the canary's
multiplied by the condition's ratio; errors are Bernoulli per request (baseline 1% unless said
otherwise). Each condition draws from its own seeded generator, run by run, so the first k runs
are the same whatever ``--runs`` is.

It prints, per condition, Vigil's share of FAIL / PASS / INCONCLUSIVE verdicts with the check that
failed, Kayenta's share of FAIL / MARGINAL / PASS, and how often Kayenta classified its latency and
error-rate metrics High. It asserts nothing; ``tests/detectors/test_canary_power.py`` asserts.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from tests.detectors import kayenta_reference as kayenta
from vigil.detectors.canary_judge import ArmSample, CheckInput, judge

MEDIAN_MS = 100.0
SIGMA = 0.5
SERVICE = "shop"


@dataclass(frozen=True)
class Condition:
    """What the canary does differently, and how many requests each arm sees."""

    name: str
    requests: int  # per arm
    latency_ratio: float = 1.0
    baseline_error_rate: float = 0.01
    canary_error_rate: float = 0.01
    min_requests: int = 50


@dataclass
class Tally:
    """Counts over the runs of one condition."""

    runs: int = 0
    vigil: Counter[str] = field(default_factory=Counter)  # verdicts
    vigil_failed: Counter[str] = field(default_factory=Counter)  # check kinds that failed
    kayenta: Counter[str] = field(default_factory=Counter)  # verdicts
    kayenta_high: Counter[str] = field(default_factory=Counter)  # metrics classified High
    seconds_vigil: float = 0.0
    seconds_kayenta: float = 0.0

    def vigil_rate(self, verdict: str) -> float:
        return self.vigil[verdict] / self.runs

    def kayenta_rate(self, verdict: str) -> float:
        return self.kayenta[verdict] / self.runs

    def kayenta_high_rate(self, metric: str) -> float:
        return self.kayenta_high[metric] / self.runs


NO_DIFFERENCE = [
    Condition("no difference, 50 per arm", 50),
    Condition("no difference, 500 per arm", 500),
    Condition("no difference, 2,000 per arm", 2000),
]
LATENCY = [
    Condition("latency +50%, 50 per arm", 50, latency_ratio=1.5),
    Condition("latency +25%, 500 per arm", 500, latency_ratio=1.25),
    Condition("latency +10%, 500 per arm", 500, latency_ratio=1.10),
]
ERRORS = [
    Condition("errors 1% -> 6%, 500 per arm", 500, canary_error_rate=0.06),
    Condition("errors 1% -> 3%, 2,000 per arm", 2000, canary_error_rate=0.03),
]
BELOW_MINIMUM = Condition("latency +50%, 30 per arm (minimum 50)", 30, latency_ratio=1.5)
# Not in the required grid: a shift too small to matter, at a volume that makes it significant.
TRIVIAL = Condition("latency +2%, 20,000 per arm", 20_000, latency_ratio=1.02)
GRID = [*NO_DIFFERENCE, *LATENCY, *ERRORS, BELOW_MINIMUM]
SEEDS = {c.name: i for i, c in enumerate([*GRID, TRIVIAL])}


def simulate(condition: Condition, runs: int, seed: int = 2024, *, with_kayenta: bool = True) -> Tally:
    """`runs` analyses of `condition`, judged by Vigil and (unless told not to) by Kayenta's judge."""
    rng = np.random.default_rng([seed, SEEDS.get(condition.name, 99)])
    n = condition.requests
    tally = Tally(runs=runs)
    for _ in range(runs):
        base = rng.lognormal(math.log(MEDIAN_MS), SIGMA, n)
        can = rng.lognormal(math.log(MEDIAN_MS), SIGMA, n) * condition.latency_ratio
        base_errors = int(rng.binomial(n, condition.baseline_error_rate))
        can_errors = int(rng.binomial(n, condition.canary_error_rate))

        started = time.perf_counter()
        baseline = ArmSample(base, errors=base_errors, requests=n)
        canary = ArmSample(can, errors=can_errors, requests=n)
        judgement = judge(
            [CheckInput(SERVICE, "latency", baseline, canary), CheckInput(SERVICE, "error_rate", baseline, canary)],
            min_requests=condition.min_requests,
        )
        tally.vigil[judgement.verdict] += 1
        for check in judgement.checks:
            if check.result == "fail":
                tally.vigil_failed[check.kind] += 1
        tally.seconds_vigil += time.perf_counter() - started

        if with_kayenta:
            started = time.perf_counter()
            result = kayenta.judge(
                [
                    kayenta.MetricPair("latency", base, can),
                    kayenta.MetricPair("error_rate", np.array([base_errors / n]), np.array([can_errors / n])),
                ]
            )
            tally.kayenta[result.verdict] += 1
            for name, classification in result.classifications.items():
                if classification.label == "High":
                    tally.kayenta_high[name] += 1
            tally.seconds_kayenta += time.perf_counter() - started
    return tally


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs per condition (default 1000)")
    parser.add_argument("--trivial-runs", type=int, default=200, help="runs of the +2%% at 20,000 condition")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()

    header = (
        f"{'condition':<40} {'runs':>5} | {'Vigil FAIL':>10} {'PASS':>6} {'INCONC':>6} {'lat/err':>9} |"
        f" {'Kayenta FAIL':>12} {'MARG':>6} {'PASS':>6} | {'K lat High':>10} {'K err High':>10}"
    )
    print(header)
    print("-" * len(header))
    total = time.perf_counter()
    seconds_vigil = seconds_kayenta = 0.0
    all_runs = 0
    for condition in [*GRID, TRIVIAL]:
        runs = args.trivial_runs if condition is TRIVIAL else args.runs
        t = simulate(condition, runs, args.seed)
        failed = f"{t.vigil_failed['latency']}/{t.vigil_failed['error_rate']}"
        print(
            f"{condition.name:<40} {runs:>5} | {_pct(t.vigil_rate('FAIL')):>10} {_pct(t.vigil_rate('PASS')):>6}"
            f" {_pct(t.vigil_rate('INCONCLUSIVE')):>6} {failed:>9} | {_pct(t.kayenta_rate('FAIL')):>12}"
            f" {_pct(t.kayenta_rate('MARGINAL')):>6} {_pct(t.kayenta_rate('PASS')):>6} |"
            f" {_pct(t.kayenta_high_rate('latency')):>10} {_pct(t.kayenta_high_rate('error_rate')):>10}"
        )
        if condition is not TRIVIAL:
            seconds_vigil, seconds_kayenta, all_runs = (
                t.seconds_vigil + seconds_vigil,
                t.seconds_kayenta + seconds_kayenta,
                all_runs + runs,
            )
    print(
        "\nlat/err: runs in which Vigil's latency / error-rate check failed (a run FAILs if either does)."
        "\nK lat High, K err High: runs in which Kayenta classified its latency / error-rate metric High."
    )
    print(
        f"Per run over the grid: Vigil {1000 * seconds_vigil / all_runs:.2f} ms,"
        f" Kayenta reference {1000 * seconds_kayenta / all_runs:.2f} ms."
    )
    print(f"\n{time.perf_counter() - total:.1f} s in all")


if __name__ == "__main__":
    main()
