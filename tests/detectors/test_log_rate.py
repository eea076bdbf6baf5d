"""Log template rate and new-pattern detectors on generated per-minute counts with known changes."""

from __future__ import annotations

import numpy as np

from vigil.detectors.base import Anomaly
from vigil.detectors.log_rate import NewPatternDetector, TemplateRateDetector


def run(detector: TemplateRateDetector | NewPatternDetector, xs: list[dict[str, float]]) -> list[Anomaly | None]:
    out = []
    for x in xs:
        detector.score_one(x)
        detector.learn_one(x)
        out.append(detector.anomaly())
    return out


def counts(values: np.ndarray) -> list[dict[str, float]]:
    return [{"t": 60.0 * i, "y": float(v)} for i, v in enumerate(values)]


def episodes(states: list[Anomaly | None]) -> list[tuple[float, int, int]]:
    """(onset, first minute open, last minute open) of each excursion."""
    found: list[tuple[float, int, int]] = []
    for i, a in enumerate(states):
        if a is None:
            continue
        if found and found[-1][2] == i - 1 and found[-1][0] == a.onset:
            found[-1] = (a.onset, found[-1][1], i)
        else:
            found.append((a.onset, i, i))
    return found


def test_steady_and_sparse_templates_raise_nothing_over_a_week() -> None:
    rng = np.random.default_rng(1)
    for rate in (0.05, 0.3, 2.0, 40.0):
        assert episodes(run(TemplateRateDetector(), counts(rng.poisson(rate, 7 * 1440)))) == [], rate


def test_a_spike_is_one_finding_dated_to_its_first_minute_and_closes_after_it() -> None:
    rng = np.random.default_rng(2)
    values = rng.poisson(5.0, 300)
    values[200:205] = 80
    ((onset, opened, closed),) = episodes(run(TemplateRateDetector(), counts(values)))
    assert (onset, opened) == (200 * 60.0, 200)
    assert closed == 206  # open through the spike, closed after 3 calm minutes (205, 206, 207)


def test_a_steady_template_that_stops_is_flagged_from_its_first_silent_minute_and_closes_when_back() -> None:
    rng = np.random.default_rng(3)
    values = rng.poisson(10.0, 300)
    values[200:240] = 0
    detector = TemplateRateDetector()
    states = run(detector, counts(values))
    ((onset, opened, closed),) = episodes(states)
    assert onset == 200 * 60.0
    assert opened == 202  # 3 silent minutes make a 10-a-minute template's absence certain
    assert closed == 239  # closes at the first minute it is logged again
    first = states[opened]
    assert first is not None and first.observed == 0.0 and 8.0 < first.baseline < 12.0


def test_a_bursty_template_that_is_often_absent_never_vanishes() -> None:
    rng = np.random.default_rng(4)
    values = rng.poisson(3.0, 400) * (rng.random(400) < 0.5)  # absent half the minutes
    values[300:] = 0
    assert episodes(run(TemplateRateDetector(), counts(values))) == []


def test_nothing_fires_during_the_first_hour_of_a_template() -> None:
    values = np.full(120, 2)
    values[30:35] = 500
    states = run(TemplateRateDetector(), counts(values))
    assert episodes(states[:60]) == []


def test_a_new_warning_pattern_opens_at_its_first_minute_and_closes_after_a_quiet_quarter_hour() -> None:
    xs = [{"t": 0.0, "y": 4.0, "new": 1.0, "severity": 17.0}]
    xs += [{"t": 60.0 * m, "y": 2.0, "new": 0.0, "severity": 17.0} for m in range(1, 5)]
    xs += [{"t": 60.0 * m, "y": 0.0} for m in range(5, 30)]
    states = run(NewPatternDetector(), xs)
    assert episodes(states) == [(0.0, 0, 18)]  # quiet from minute 5; closed at its 15th quiet minute
    last = states[18]
    assert last is not None and last.observed == 12.0
    assert last.summary == "first logged at ERROR (12 lines so far)."


def test_new_info_patterns_and_old_warning_patterns_are_not_findings() -> None:
    assert run(NewPatternDetector(), [{"t": 0.0, "y": 9.0, "new": 1.0, "severity": 9.0}]) == [None]
    assert run(NewPatternDetector(), [{"t": 0.0, "y": 9.0, "new": 0.0, "severity": 21.0}]) == [None]
