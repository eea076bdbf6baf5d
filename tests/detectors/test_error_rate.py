"""The error-rate detector on generated request counts with known change points."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest

from vigil.detectors.error_rate import ErrorRateDetector

T0 = 1_700_000_040.0


def feed(detector: ErrorRateDetector, requests: np.ndarray, errors: np.ndarray) -> list[float | None]:
    """The onset reported after each minute (None while normal)."""
    onsets: list[float | None] = []
    for minute, (n, k) in enumerate(zip(requests, errors, strict=True)):
        x = {"t": T0 + 60 * minute, "y": float(k), "n": float(n)}
        detector.score_one(x)
        detector.learn_one(x)
        anomaly = detector.anomaly()
        onsets.append(None if anomaly is None else anomaly.onset)
    return onsets


def counts(seed: int, minutes: int, per_minute: int, rates: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Requests (Poisson) and errors (binomial) per minute; `rates` are (from minute, error rate)."""
    rng = np.random.default_rng(seed)
    requests = rng.poisson(per_minute, minutes)
    rate = np.zeros(minutes)
    for start, value in rates:
        rate[start:] = value
    return requests, rng.binomial(requests, rate)


@pytest.mark.parametrize("per_minute", [5, 20, 200, 2000])
@pytest.mark.parametrize("seed", range(3))
def test_three_days_at_a_steady_one_percent_raise_nothing(per_minute: int, seed: int) -> None:
    requests, errors = counts(seed, 3 * 1440, per_minute, [(0, 0.01)])
    assert set(feed(ErrorRateDetector(), requests, errors)) == {None}


@pytest.mark.parametrize(("per_minute", "within_minutes"), [(20, 15), (200, 3), (2000, 2)])
@pytest.mark.parametrize("seed", range(3))
def test_a_rise_from_one_to_six_percent_is_found_once_near_its_onset(
    per_minute: int, within_minutes: int, seed: int
) -> None:
    change = 600
    requests, errors = counts(seed, 900, per_minute, [(0, 0.01), (change, 0.06)])
    onsets = feed(ErrorRateDetector(), requests, errors)

    fired = next(i for i, onset in enumerate(onsets) if onset is not None)
    assert change <= fired <= change + within_minutes
    # One excursion: the onset never moves once reported, and sits at most 5 minutes before the change.
    assert {onset for onset in onsets[fired:]} == {onsets[fired]}
    assert T0 + 60 * (change - 5) <= onsets[fired] <= T0 + 60 * (change + within_minutes)  # type: ignore[operator]


def test_the_finding_closes_once_the_rate_is_back() -> None:
    requests, errors = counts(4, 900, 200, [(0, 0.01), (600, 0.2), (640, 0.01)])
    onsets = feed(ErrorRateDetector(), requests, errors)
    assert onsets[620] is not None
    assert onsets[-1] is None
    assert sum(1 for a, b in itertools.pairwise(onsets) if a is None and b is not None) == 1


def test_no_finding_before_the_baseline_exists() -> None:
    # Every request fails from the first minute: without a baseline there is nothing to regress from.
    requests = np.full(20, 10)
    assert set(feed(ErrorRateDetector(), requests, requests)) == {None}


def test_the_observed_rate_and_baseline_are_reported() -> None:
    requests, errors = counts(5, 700, 1000, [(0, 0.01), (600, 0.2)])
    detector = ErrorRateDetector()
    feed(detector, requests, errors)
    anomaly = detector.anomaly()
    assert anomaly is not None
    assert 0.008 < anomaly.baseline < 0.012
    assert 0.19 < anomaly.observed < 0.21
    assert anomaly.severity == "critical"


def test_a_restored_detector_continues_identically() -> None:
    requests, errors = counts(6, 800, 100, [(0, 0.01), (700, 0.05)])
    whole = ErrorRateDetector()
    expected = feed(whole, requests, errors)
    first = ErrorRateDetector()
    head = feed(first, requests[:400], errors[:400])
    restored = pickle.loads(pickle.dumps(first))
    # `feed` numbers minutes from 0 again: shift the restored detector's onsets to compare.
    shifted = [None if o is None else o + 400 * 60 for o in feed(restored, requests[400:], errors[400:])]
    assert head + shifted == expected


def test_a_service_whose_normal_error_rate_is_high_is_not_an_alarm_once_warm() -> None:
    """Warm-up learns the baseline only: 30% is this service's normal, not a rise from the prior."""
    rng = np.random.default_rng(21)
    detector = ErrorRateDetector()
    opened = []
    for minute in range(600):
        x = {"t": 60.0 * minute, "y": float(rng.binomial(200, 0.3)), "n": 200.0}
        detector.score_one(x)
        detector.learn_one(x)
        opened.append(detector.anomaly() is not None)
    assert not any(opened)
    assert 0.28 < detector.p0 < 0.32
