"""SLO budgets and multiwindow multi-burn-rate alerts on per-minute counts with exact expected values."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest

from vigil.detectors.slo_burn import (
    BURN_WINDOWS,
    WORKBOOK_POLICY,
    BurnRule,
    MinuteCounts,
    SloStatus,
    budget_burndown,
    burn_rate,
    burn_rates,
    error_budget,
    error_budget_remaining,
    evaluate,
    parse_window,
    sli,
    window_counts,
)

DAY = 86_400
NOW = 1_700_006_400.0  # a minute boundary
RPM = 1000  # requests per minute


def steady(days: float, bad_per_minute: float = 0.0, rpm: float = RPM, now: float = NOW) -> MinuteCounts:
    """`days` of minutes ending at `now`, `rpm` requests each, `bad_per_minute` of them bad."""
    minutes = int(days * 1440)
    start = now - 60.0 * minutes + 60.0 * np.arange(minutes)
    total = np.full(minutes, float(rpm))
    return MinuteCounts(minute_start=start, good=total - bad_per_minute, total=total)


def with_bad(counts: MinuteCounts, since: float, until: float, bad_per_minute: float) -> MinuteCounts:
    """A copy with `bad_per_minute` bad requests in every minute starting in [since, until)."""
    good = counts.good.copy()
    inside = (counts.minute_start >= since) & (counts.minute_start < until)
    good[inside] = counts.total[inside] - bad_per_minute
    return MinuteCounts(minute_start=counts.minute_start, good=good, total=counts.total)


def alert(status: SloStatus, long_window: str) -> tuple[bool, float | None, float | None]:
    (found,) = [a for a in status.alerts if a.long_window == long_window]
    return found.firing, found.long_burn, found.short_burn


def test_steady_error_ratio_at_the_budget_burns_at_exactly_one() -> None:
    status = evaluate(steady(30, bad_per_minute=1), objective=99.9, window_s=30 * DAY, now=NOW)

    assert status.burn_rates == dict.fromkeys(BURN_WINDOWS, 1.0)
    assert status.sli_current == 0.999
    assert status.error_budget_remaining == 0.0  # exactly spent at the end of the window
    assert status.total == 30 * 1440 * RPM
    # Burning at exactly the budget for three days is the slow ticket's threshold (1x), and a
    # burn at a threshold counts; the pages and the 1d ticket stay quiet.
    assert [(a.long_window, a.firing) for a in status.alerts] == [
        ("1h", False),
        ("6h", False),
        ("1d", False),
        ("3d", True),
    ]


def test_two_percent_errors_for_an_hour_fires_the_fast_page_only() -> None:
    counts = with_bad(steady(30), NOW - 3600, NOW, bad_per_minute=20)  # 2% of 1000
    status = evaluate(counts, objective=99.9, window_s=30 * DAY, now=NOW)

    # 1200 bad requests: in 1h of 60,000 requests, 2% / 0.1% = 20; diluted in longer windows.
    assert status.burn_rates == {
        "5m": 20.0,
        "30m": 20.0,
        "1h": 20.0,
        "2h": 10.0,
        "6h": float(Fraction(10, 3)),
        "1d": float(Fraction(5, 6)),
        "3d": float(Fraction(5, 18)),
    }
    assert alert(status, "1h") == (True, 20.0, 20.0)  # 20 > 14.4 in both windows
    assert alert(status, "6h") == (False, float(Fraction(10, 3)), 20.0)  # 3.33 < 6
    assert alert(status, "1d") == (False, float(Fraction(5, 6)), 10.0)
    assert alert(status, "3d") == (False, float(Fraction(5, 18)), float(Fraction(10, 3)))
    assert [(a.severity, a.long_window, a.short_window, a.threshold) for a in status.firing] == [
        ("page", "1h", "5m", 14.4)
    ]
    # 1200 of the 30 days' 43,200 allowed bad requests: 1/36 of the budget spent.
    assert status.error_budget_remaining == float(Fraction(35, 36))


def test_the_page_waits_for_the_long_window_and_resets_on_the_short_one() -> None:
    spike_start = NOW - 3600
    counts = with_bad(steady(30), spike_start, NOW, bad_per_minute=20)

    # Four minutes into the spike the 5m window burns at 16 > 14.4 but the hour only at 4/3.
    early = evaluate(counts, objective=99.9, window_s=30 * DAY, now=spike_start + 240)
    assert alert(early, "1h") == (False, float(Fraction(4, 3)), 16.0)

    # Six clean minutes after the spike: the hour still burns at 18, the 5m window at 0.
    after = MinuteCounts(
        minute_start=np.concatenate([counts.minute_start, NOW + 60.0 * np.arange(6)]),
        good=np.concatenate([counts.good, np.full(6, float(RPM))]),
        total=np.concatenate([counts.total, np.full(6, float(RPM))]),
    )
    later = evaluate(after, objective=99.9, window_s=30 * DAY, now=NOW + 360)
    assert alert(later, "1h") == (False, 18.0, 0.0)


def test_a_five_minute_outage_alone_does_not_page_at_99_percent() -> None:
    counts = with_bad(steady(30), NOW - 300, NOW, bad_per_minute=RPM)  # 100% errors for 5 minutes
    status = evaluate(counts, objective=99.0, window_s=30 * DAY, now=NOW)

    # 5,000 bad: the 5m window burns at 1 / 0.01 = 100, the hour at (5000 / 60000) / 0.01 = 8.33.
    assert alert(status, "1h") == (False, float(Fraction(25, 3)), 100.0)
    assert alert(status, "6h") == (False, float(Fraction(25, 18)), float(Fraction(50, 3)))
    assert not status.firing
    # 5,000 of 432,000 allowed bad requests.
    assert status.error_budget_remaining == float(1 - Fraction(5000, 432_000))


def test_the_same_outage_pages_at_99_9_percent_where_it_spends_a_ninth_of_the_budget() -> None:
    counts = with_bad(steady(30), NOW - 300, NOW, bad_per_minute=RPM)
    status = evaluate(counts, objective=99.9, window_s=30 * DAY, now=NOW)

    assert alert(status, "1h") == (True, float(Fraction(250, 3)), 1000.0)  # 83.3 > 14.4
    assert alert(status, "6h") == (True, float(Fraction(250, 18)), float(Fraction(500, 3)))  # 13.9 > 6
    assert status.error_budget_remaining == float(1 - Fraction(5000, 43_200))


def test_a_five_minute_blip_of_ten_percent_errors_does_not_page_at_99_9_percent() -> None:
    counts = with_bad(steady(30), NOW - 300, NOW, bad_per_minute=100)
    status = evaluate(counts, objective=99.9, window_s=30 * DAY, now=NOW)

    assert alert(status, "1h") == (False, float(Fraction(25, 3)), 100.0)
    assert not status.firing


def test_thresholds_scale_with_the_slo_window() -> None:
    assert [rule.threshold(30 * DAY) for rule in WORKBOOK_POLICY] == [14.4, 6.0, 3.0, 1.0]
    assert [rule.threshold(28 * DAY) for rule in WORKBOOK_POLICY] == [13.44, 5.6, 2.8, float(Fraction(14, 15))]
    assert [(r.severity, r.long_window, r.short_window, r.budget_fraction) for r in WORKBOOK_POLICY] == [
        ("page", "1h", "5m", 0.02),
        ("page", "6h", "30m", 0.05),
        ("ticket", "1d", "2h", 0.10),
        ("ticket", "3d", "6h", 0.10),
    ]


def test_a_burn_of_14_pages_on_a_28_day_slo_but_not_on_a_30_day_one() -> None:
    counts = with_bad(steady(30), NOW - 3600, NOW, bad_per_minute=14)  # 1.4% / 0.1% = 14

    on_28 = evaluate(counts, objective=99.9, window_s=28 * DAY, now=NOW)
    on_30 = evaluate(counts, objective=99.9, window_s=30 * DAY, now=NOW)

    assert alert(on_28, "1h") == (True, 14.0, 14.0)  # > 13.44
    assert alert(on_30, "1h") == (False, 14.0, 14.0)  # < 14.4
    assert on_28.alerts[0].threshold == 13.44
    # The 28-day window holds 28 days of traffic: 840 bad of 40,320 allowed.
    assert on_28.total == 28 * 1440 * RPM
    assert on_28.error_budget_remaining == float(1 - Fraction(840, 40_320))


def test_a_burn_exactly_at_the_threshold_fires_and_just_below_does_not() -> None:
    # 6 bad per 1000 over 6h and 30m: burn 6.0, the second page's threshold. The Workbook's
    # detection times count it (1.44% errors pages after exactly 60 minutes).
    counts = with_bad(steady(30), NOW - 6 * 3600, NOW, bad_per_minute=6)
    status = evaluate(counts, objective=99.9, window_s=30 * DAY, now=NOW)
    assert alert(status, "6h") == (True, 6.0, 6.0)

    below = with_bad(steady(30), NOW - 6 * 3600, NOW, bad_per_minute=5)
    assert alert(evaluate(below, objective=99.9, window_s=30 * DAY, now=NOW), "6h") == (False, 5.0, 5.0)


def test_budget_remaining_after_a_known_number_of_bad_requests() -> None:
    base = steady(30)  # 43.2M requests, 43,200 allowed bad at 99.9%
    quarter = with_bad(base, NOW - 10 * DAY, NOW - 10 * DAY + 60 * 108, bad_per_minute=100)  # 10,800 bad
    overspent = with_bad(base, NOW - DAY, NOW, bad_per_minute=60)  # 86,400 bad

    assert evaluate(quarter, objective=99.9, window_s=30 * DAY, now=NOW).error_budget_remaining == 0.75
    assert evaluate(overspent, objective=99.9, window_s=30 * DAY, now=NOW).error_budget_remaining == -1.0
    # Bad requests older than the window no longer count.
    assert evaluate(quarter, objective=99.9, window_s=7 * DAY, now=NOW).error_budget_remaining == 1.0
    assert error_budget_remaining(99.9, 43_200_000 - 10_800, 43_200_000) == 0.75


def test_no_traffic_has_no_sli_a_full_budget_no_burn_and_no_alert() -> None:
    empty = MinuteCounts.from_rows([])
    status = evaluate(empty, objective=99.9, window_s=30 * DAY, now=NOW)

    assert status.sli_current is None
    assert status.error_budget_remaining == 1.0
    assert status.burn_rates == dict.fromkeys(BURN_WINDOWS)
    assert all(a.long_burn is None and a.short_burn is None and not a.firing for a in status.alerts)
    assert burn_rates(empty, objective=99.9, now=NOW) == dict.fromkeys(BURN_WINDOWS)
    assert sli(0, 0) is None
    assert burn_rate(99.9, 0, 0) is None
    assert error_budget_remaining(99.9, 0, 0) == 1.0


def test_a_silent_short_window_never_fires_whatever_the_long_one_says() -> None:
    # Total outage from 60 to 10 minutes ago, then no traffic at all.
    rows = [(NOW - 60 * m, 0.0, 100.0) for m in range(11, 61)]
    status = evaluate(rows, objective=99.9, window_s=30 * DAY, now=NOW)

    assert alert(status, "1h") == (False, 1000.0, None)
    assert status.burn_rates["5m"] is None
    assert status.sli_current == 0.0


def test_window_membership_is_half_open_at_now() -> None:
    rows = [
        (NOW - 360, 0, 7),  # just outside 5m
        (NOW - 300, 90, 100),  # first minute of the 5m window
        (NOW - 60, 100, 100),  # last complete minute
        (NOW, 0, 1000),  # the minute in progress: ignored
    ]
    assert window_counts(rows, now=NOW, window_s=300) == (190.0, 200.0)
    assert burn_rates(rows, objective=99.0, now=NOW, windows=["5m", "6m"]) == {
        "5m": 5.0,
        "6m": float(Fraction(1700, 207)),
    }


def test_rows_and_arrays_are_the_same_input_and_rows_need_not_be_sorted() -> None:
    rows = [(NOW - 120, 95, 100), (NOW - 60, 98, 100), (NOW - 180, 99, 100), (NOW - 60, 1, 2)]
    from_rows = MinuteCounts.from_rows(rows)
    assert list(from_rows.minute_start) == [NOW - 180, NOW - 120, NOW - 60, NOW - 60]
    arrays = MinuteCounts(
        minute_start=np.array([r[0] for r in rows]),
        good=np.array([r[1] for r in rows]),
        total=np.array([r[2] for r in rows]),
    )
    expected = {"5m": float(Fraction(9, 302) / Fraction(1, 1000))}
    assert burn_rates(from_rows, objective=99.9, now=NOW, windows=["5m"]) == expected
    assert burn_rates(arrays, objective=99.9, now=NOW, windows=["5m"]) == expected
    assert burn_rates(rows, objective=99.9, now=NOW, windows=["5m"]) == expected


def test_burndown_falls_from_one_to_the_remaining_budget() -> None:
    counts = steady(30, bad_per_minute=1)
    points = budget_burndown(counts, objective=99.9, window_s=30 * DAY, now=NOW)

    assert len(points) == 30 * 24 + 1
    assert points[0] == (NOW - 30 * DAY, 1.0)
    assert points[360] == (NOW - 15 * DAY, 0.5)
    assert points[-1] == (NOW, 0.0)
    remaining = [r for _, r in points]
    assert remaining == sorted(remaining, reverse=True)
    status = evaluate(counts, objective=99.9, window_s=30 * DAY, now=NOW)
    assert points[-1][1] == status.error_budget_remaining


def test_burndown_steps_that_do_not_divide_the_window_end_at_now() -> None:
    counts = with_bad(steady(1), NOW - 3600, NOW, bad_per_minute=2)  # 120 bad of 1440 allowed
    points = budget_burndown(counts, objective=99.9, window_s=DAY, now=NOW, step_s=7 * 3600)

    assert [t for t, _ in points] == [NOW - DAY + k * 7 * 3600 for k in range(4)] + [NOW]
    assert [r for _, r in points] == [1.0, 1.0, 1.0, 1.0, float(1 - Fraction(120, 1440))]
    assert budget_burndown(MinuteCounts.from_rows([]), objective=99.9, window_s=DAY, now=NOW, step_s=DAY) == [
        (NOW - DAY, 1.0),
        (NOW, 1.0),
    ]


def test_scalar_helpers() -> None:
    assert error_budget(99.9) == 0.001
    assert error_budget(99.95) == 0.0005
    assert sli(999, 1000) == 0.999
    assert burn_rate(99.9, 999, 1000) == 1.0
    assert burn_rate(99.0, 0, 10) == 100.0
    assert error_budget_remaining(99.0, 80, 100) == -19.0
    assert parse_window("5m") == 300
    assert parse_window("90s") == 90
    assert parse_window("3d") == 3 * DAY


def test_custom_policy_windows_get_burn_rates_too() -> None:
    policy = [BurnRule("page", "15m", "1m", 0.01)]
    counts = with_bad(steady(30), NOW - 900, NOW, bad_per_minute=200)  # 20% for 15 minutes
    status = evaluate(counts, objective=99.9, window_s=30 * DAY, now=NOW, policy=policy)

    assert policy[0].threshold(30 * DAY) == 28.8
    assert status.burn_rates["15m"] == 200.0
    assert status.burn_rates["1m"] == 200.0
    assert [a.firing for a in status.alerts] == [True]


def test_to_dict_is_json_ready() -> None:
    status = evaluate(steady(1, bad_per_minute=3), objective=99.9, window_s=30 * DAY, now=NOW)
    data = json.loads(json.dumps(status.to_dict(), allow_nan=False))
    assert data["burn_rates"]["1h"] == 3.0
    assert data["alerts"][2] == {
        "severity": "ticket",
        "long_window": "1d",
        "short_window": "2h",
        "threshold": 3.0,
        "long_burn": 3.0,
        "short_burn": 3.0,
        "firing": True,  # at the threshold
    }
    assert data["alerts"][3]["firing"] is True  # 3d has one day of traffic at burn 3 > 1
    assert data["sli_current"] == 0.997


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: error_budget(100.0), "objective"),
        (lambda: error_budget(0.0), "objective"),
        (lambda: sli(11, 10), "good <= total"),
        (lambda: burn_rate(99.9, -1, 10), "good <= total"),
        (lambda: sli(math.nan, 10), "good <= total"),
        (lambda: parse_window("5 minutes"), "window"),
        (lambda: MinuteCounts.from_rows([(NOW, 5, 4)]), "good <= total"),
        (lambda: MinuteCounts.from_rows([(math.nan, 5, 4)]), "NaN"),
        (lambda: evaluate([], objective=99.9, window_s=0, now=NOW), "window_s"),
        (lambda: burn_rates([], objective=100, now=NOW), "objective"),
        (lambda: BurnRule("page", "5m", "1h", 0.02), "shorter"),
        (lambda: BurnRule("page", "1h", "5m", 0.0), "budget_fraction"),
        (lambda: BurnRule("warn", "1h", "5m", 0.02), "severity"),  # type: ignore[arg-type]
    ],
)
def test_invalid_input_is_rejected(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
