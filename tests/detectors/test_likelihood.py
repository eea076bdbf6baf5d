"""AnomalyLikelihood on raw-score streams whose character is known."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from vigil.detectors.likelihood import AnomalyLikelihood, log_likelihood


def test_log_scale_matches_numentas() -> None:
    assert log_likelihood(1.0) == 0.0
    assert log_likelihood(1e-5) == pytest.approx(0.5, abs=1e-4)
    assert log_likelihood(1e-12) == pytest.approx(1.0, abs=1e-3)
    assert log_likelihood(0.0) == 1.0


def test_nothing_is_judged_while_learning() -> None:
    likelihood = AnomalyLikelihood(learn=50)
    assert all(likelihood.update(0.0) == 1.0 for _ in range(49))
    assert likelihood.update(1.0) == 1.0
    assert likelihood.tail(1.0) < 1e-5


def test_a_run_of_high_raw_scores_is_unlikely_on_a_quiet_history() -> None:
    rng = np.random.default_rng(1)
    likelihood = AnomalyLikelihood(short=10)
    for raw in 0.05 * rng.random(1000):
        assert likelihood.update(float(raw)) > 1e-5
    tails = [likelihood.update(0.9) for _ in range(10)]
    assert 1e-10 < tails[0] < 1e-5  # one bad point among ten already counts
    assert max(tails[1:]) < 1e-10  # a run of them is beyond doubt


def test_the_same_run_is_usual_on_a_bursty_history() -> None:
    rng = np.random.default_rng(2)
    likelihood = AnomalyLikelihood(short=10)
    for i in range(3000):
        burst = i % 100 < 10  # ten bad points every hundred
        likelihood.update(0.9 if burst else float(0.05 * rng.random()))
    # Below the usual alarm level (1e-5), where the quiet history put it under 1e-10.
    assert min(likelihood.update(0.9) for _ in range(10)) > 1e-5


def test_floors_keep_a_perfectly_predicted_series_from_turning_a_small_error_into_a_certainty() -> None:
    likelihood = AnomalyLikelihood(short=10, min_mean=0.03, min_std=math.sqrt(0.0003))
    for _ in range(500):
        likelihood.update(0.0)
    assert likelihood.tail(0.2) > 1e-3  # the short mean moves to 0.02, under the floor of the mean


def test_pickle_round_trip_gives_identical_tails() -> None:
    rng = np.random.default_rng(3)
    likelihood = AnomalyLikelihood()
    for raw in rng.random(300).tolist():
        likelihood.update(raw)
    clone = pickle.loads(pickle.dumps(likelihood))
    for raw in rng.random(300).tolist():
        assert likelihood.update(raw) == clone.update(raw)
