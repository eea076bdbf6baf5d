"""The NAB scorer of tests/bench/nab.py on a tiny synthetic corpus."""

from __future__ import annotations

import math

import pytest

from tests.bench.nab import (
    PROFILES,
    normalise,
    optimise,
    probation_length,
    scaled_sigmoid,
    score_at,
    sweep_file,
)

N = 1000  # points per file: probation is the first 150
WINDOWS = {"a.csv": [(400, 499)], "b.csv": [(300, 349), (700, 749)]}
STANDARD = PROFILES["standard"]


def scored(detections: dict[str, list[int]], cost: dict[str, float] = STANDARD) -> float:
    rows = []
    for name, windows in WINDOWS.items():
        scores = [0.0] * N
        for i in detections.get(name, []):
            scores[i] = 1.0
        rows.extend(sweep_file(name, scores, windows, cost))
    return normalise(score_at(rows, cost, 0.5), cost, sum(len(w) for w in WINDOWS.values()))


def test_sigmoid_at_window_edges() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)  # 0.98661
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == -1.0


def test_probation_is_fifteen_percent_capped_at_750() -> None:
    assert probation_length(1000) == 150
    assert probation_length(22695) == 750


@pytest.mark.parametrize("profile", PROFILES)
def test_null_detector_scores_zero_and_perfect_one_hundred(profile: str) -> None:
    cost = PROFILES[profile]
    assert scored({}, cost) == 0.0
    perfect = {name: [start for start, _ in windows] for name, windows in WINDOWS.items()}
    assert scored(perfect, cost) == pytest.approx(100.0)


def test_only_the_first_detection_in_a_window_counts() -> None:
    once = scored({"a.csv": [450]})
    assert scored({"a.csv": [450, 460, 480, 499]}) == once
    assert scored({"a.csv": [420, 450]}) > once  # earlier is better


def test_detection_at_the_window_end_is_worth_little() -> None:
    rows = sweep_file("a.csv", [0.0] * N, WINDOWS["a.csv"], STANDARD)
    assert rows[400].sweep_score == pytest.approx(1.0)
    assert rows[499].sweep_score == pytest.approx(scaled_sigmoid(-1 / 100) / scaled_sigmoid(-1.0))


def test_false_positives_cost_more_the_further_past_the_window() -> None:
    rows = sweep_file("a.csv", [0.0] * N, WINDOWS["a.csv"], STANDARD)
    assert rows[200].sweep_score == -STANDARD["fpWeight"]  # before any window: full cost
    assert -0.01 < rows[501].sweep_score < 0.0  # just past the window: almost free
    assert rows[501].sweep_score > rows[560].sweep_score > rows[900].sweep_score
    assert rows[100].window == "probationary"


def test_probationary_detections_are_ignored() -> None:
    assert scored({"a.csv": [10, 20, 100]}) == 0.0


def test_optimiser_picks_the_threshold_that_drops_false_positives() -> None:
    scores = [0.0] * N
    scores[420] = 0.9  # the true anomaly
    for i in range(600, 1000, 10):
        scores[i] = 0.4  # forty weaker false alarms
    rows = sweep_file("a.csv", scores, WINDOWS["a.csv"], STANDARD)
    best = optimise(rows, STANDARD)
    assert best.threshold == 0.9
    assert best.tp == 1 and best.fp == 0
    assert normalise(best.score, STANDARD, 1) > normalise(score_at(rows, STANDARD, 0.4), STANDARD, 1)
