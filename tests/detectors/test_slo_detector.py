"""SLO burn-rate findings on replayed request streams, against the SRE Workbook's detection times."""

from __future__ import annotations

import pytest

from vigil.detectors.slo import SloBurnDetector
from vigil.detectors.slo_burn import WORKBOOK_POLICY

RPM = 10_000  # requests a minute
CLEAN_MINUTES = 4 * 60  # history before the errors start: every page window is covered


def detector(severity: str) -> SloBurnDetector:
    rules = tuple(rule for rule in WORKBOOK_POLICY if rule.severity == severity)
    return SloBurnDetector(99.9, 30 * 86400, rules, severity)


def minutes_to_fire(d: SloBurnDetector, error_rate: float, limit: int) -> float | None:
    """Minutes from the start of the errors until a finding is open, evaluated at each minute's end."""
    for m in range(CLEAN_MINUTES):
        d.learn_one({"t": 60.0 * m, "good": RPM, "total": RPM})
        assert d.anomaly() is None
    bad = round(RPM * error_rate)
    for m in range(limit):
        t = 60.0 * (CLEAN_MINUTES + m)
        d.learn_one({"t": t, "good": RPM - bad, "total": RPM})
        if d.anomaly() is not None:
            return m + 1.0
    return None


@pytest.mark.parametrize(
    ("error_rate", "workbook_minutes"),
    [(1.0, 0.864), (0.10, 8.64), (0.02, 43.2), (0.0144, 60.0)],
)
def test_the_fast_page_fires_within_one_minute_of_the_workbook_detection_time(
    error_rate: float, workbook_minutes: float
) -> None:
    fired = minutes_to_fire(detector("page"), error_rate, limit=120)
    assert fired is not None
    assert workbook_minutes <= fired <= workbook_minutes + 1


def test_a_page_names_its_onset_burn_and_threshold_and_closes_when_the_errors_stop() -> None:
    d = detector("page")
    assert minutes_to_fire(d, 1.0, limit=1) == 1.0
    anomaly = d.anomaly()
    assert anomaly is not None
    assert (anomaly.onset, anomaly.severity, anomaly.baseline) == (60.0 * CLEAN_MINUTES, "critical", 14.4)
    assert anomaly.summary == (
        "burning its error budget at 16.7x over 1h and 200.0x over 5m "
        "(the page threshold is 14.4x: 2% of the budget in 1h)."
    )
    # Clean again: the 5m window drops under both thresholds within five minutes.
    for m in range(1, 7):
        d.learn_one({"t": 60.0 * (CLEAN_MINUTES + m), "good": RPM, "total": RPM})
    assert d.anomaly() is None


def test_one_tenth_percent_errors_never_pages_and_nine_tenths_of_the_budget_fires_nothing() -> None:
    assert minutes_to_fire(detector("page"), 0.001, limit=8 * 60) is None
    for severity in ("page", "ticket"):
        assert minutes_to_fire(detector(severity), 0.0009, limit=4 * 1440) is None, severity


def test_the_slow_ticket_fires_at_the_budget_rate_once_three_days_are_covered() -> None:
    d = detector("ticket")
    fired = minutes_to_fire(d, 0.001, limit=4 * 1440)
    # 1x for three days is the slow ticket's threshold: the 3d window is all errors after 3 days.
    assert fired is not None and 3 * 1440 - CLEAN_MINUTES <= fired <= 3 * 1440


def test_nothing_fires_before_the_long_window_is_covered() -> None:
    d = detector("page")
    for m in range(59):
        d.learn_one({"t": 60.0 * m, "good": 0, "total": RPM})  # a fresh start into an outage
        assert d.anomaly() is None
    d.learn_one({"t": 60.0 * 59, "good": 0, "total": RPM})
    assert d.anomaly() is not None


def test_minutes_without_traffic_burn_nothing() -> None:
    d = detector("page")
    for m in range(120):
        d.learn_one({"t": 60.0 * m})
    assert d.anomaly() is None
    assert d.sums[60] == [0, 0]
