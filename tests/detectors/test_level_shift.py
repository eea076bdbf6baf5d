"""LevelShiftDetector on generated series whose change points are known."""

from __future__ import annotations

import math
import pickle

import numpy as np

from vigil.detectors.base import Anomaly
from vigil.detectors.level_shift import LevelShiftDetector

T0 = 1_700_000_000.0  # a Tuesday, 22:13 UTC: nothing special about the hour
MINUTE = 60.0


def feed(detector: LevelShiftDetector, values: np.ndarray, step: float = MINUTE) -> list[Anomaly | None]:
    """Run the detector as the runner does; NaN stands for an empty bucket."""
    out = []
    for i, v in enumerate(values.tolist()):
        x = {"t": T0 + step * i} if math.isnan(v) else {"t": T0 + step * i, "y": v}
        score = detector.score_one(x)
        assert 0.0 <= score <= 1.0
        detector.learn_one(x)
        out.append(detector.anomaly())
    return out


def latency(seed: int, minutes: int = 600) -> np.ndarray:
    return 100.0 + 5.0 * np.random.default_rng(seed).standard_normal(minutes)


def test_step_up_is_reported_once_from_its_onset_and_closes_after_return() -> None:
    for seed in range(5):
        y = latency(seed)
        y[300:360] += 60.0  # a 12-sigma regression lasting an hour
        found = feed(LevelShiftDetector(direction="up"), y)
        assert all(a is None for a in found[:300])
        assert found[300] is not None  # an abrupt step is seen on its first minute
        onset = found[300].onset
        assert abs(onset - (T0 + 300 * MINUTE)) <= 3 * MINUTE
        excursion = found[300:360]
        assert all(a is not None and a.onset == onset for a in excursion)  # one finding, stable onset
        last = excursion[-1]
        assert last is not None
        assert last.observed > 150.0 and 95.0 < last.baseline < 105.0
        assert last.severity in ("warning", "critical")
        assert all(a is None for a in found[372:])  # closed within 12 minutes of the return, no reopening


def test_sustained_small_shift_is_found_by_cusum_and_dated_back() -> None:
    for seed in range(5):
        y = latency(seed)
        y[300:] += 12.5  # 2.5 sigma: no single minute alarms, the run does
        found = feed(LevelShiftDetector(direction="up"), y)
        assert all(a is None for a in found[:300])
        opened = next(i for i, a in enumerate(found) if a is not None)
        assert opened <= 310
        first = found[opened]
        assert first is not None
        assert abs(first.onset - (T0 + 300 * MINUTE)) <= 5 * MINUTE
        assert len({a.onset for a in found if a is not None}) == 1


def opened_at(found: list[Anomaly | None]) -> list[int]:
    """Buckets where a finding opened."""
    return [
        i
        for i, a in enumerate(found)
        if a is not None and (i == 0 or found[i - 1] is None or found[i - 1].onset != a.onset)
    ]


def test_usual_bursts_stop_alarming_once_learnt_but_a_record_alarms_at_once() -> None:
    for seed in range(5):
        y = latency(seed, 2000)
        y[7::37] += 60.0  # a 12-sigma spike every 37 minutes is this series' normal
        assert all(i < 600 for i in opened_at(feed(LevelShiftDetector(direction="up"), y)))
        y[1500] += 300.0  # three times anything seen before
        found = feed(LevelShiftDetector(direction="up"), y)
        assert [i for i in opened_at(found) if i >= 600] == [1500]
        first = found[1500]
        assert first is not None and first.onset == T0 + 1500 * MINUTE and first.observed > 350.0


def test_noise_alone_never_alarms() -> None:
    for seed in range(5):
        assert all(a is None for a in feed(LevelShiftDetector(), latency(seed, 1500)))


def test_daily_seasonality_over_several_days_never_alarms() -> None:
    rng = np.random.default_rng(7)
    step = 5 * MINUTE
    n = 5 * 288  # five days of 5-minute buckets
    hours = ((T0 + step * np.arange(n)) % 86400.0) / 3600.0
    y = 400.0 + 300.0 * np.sin(2 * np.pi * hours / 24.0) + 10.0 * rng.standard_normal(n)
    assert all(a is None for a in feed(LevelShiftDetector(), y, step=step))


def test_sparse_series_with_gaps_never_alarms() -> None:
    rng = np.random.default_rng(3)
    y = latency(3, 1500)
    y[rng.random(1500) < 0.4] = np.nan  # 40% empty buckets
    y[700:820] = np.nan  # and a two-hour outage of the series
    assert all(a is None for a in feed(LevelShiftDetector(), y))


def test_cold_start_stays_quiet_before_warmup_even_on_a_wild_first_value() -> None:
    detector = LevelShiftDetector(warmup=100)
    y = latency(11, 300)
    y[0] = 1e6
    y[50] = 1e5
    found = feed(detector, y)
    assert all(a is None for a in found[:100])
    assert all(a is None for a in found)  # and the wild values did not poison the baseline


def test_direction_up_ignores_drops_but_both_sees_them() -> None:
    y = latency(5)
    y[300:400] -= 60.0
    assert all(a is None for a in feed(LevelShiftDetector(direction="up"), y))
    found = feed(LevelShiftDetector(direction="both"), y)
    assert found[300] is not None and found[300].observed < found[300].baseline


def test_tiny_shift_on_a_very_quiet_series_is_below_min_effect() -> None:
    y = 100.0 + 0.01 * np.random.default_rng(2).standard_normal(600)
    y[300:] += 0.5  # 50 sigma, but half a percent
    assert all(a is None for a in feed(LevelShiftDetector(), y))
    assert any(a is not None for a in feed(LevelShiftDetector(min_effect_rel=0.0), y))


def test_pickle_round_trip_mid_stream_gives_identical_scores() -> None:
    y = latency(9, 800)
    y[500:] += 40.0
    for split in (60, 400):  # while the rolling medians are young (exact), and after
        detector = LevelShiftDetector()
        feed(detector, y[:split])
        clone = pickle.loads(pickle.dumps(detector))
        for i, v in enumerate(y[split:].tolist(), start=split):
            x = {"t": T0 + MINUTE * i, "y": v}
            assert detector.score_one(x) == clone.score_one(x)
            detector.learn_one(x)
            clone.learn_one(x)
            assert detector.anomaly() == clone.anomaly()


def test_state_stays_small_however_long_the_series_runs() -> None:
    # Three weeks of one-minute buckets with a daily cycle: both seasonal profiles full and in use.
    n = 3 * 7 * 1440
    hours = ((T0 + MINUTE * np.arange(n)) % 86400.0) / 3600.0
    y = 100.0 + 30.0 * np.sin(2 * np.pi * hours / 24.0) + 5.0 * np.random.default_rng(4).standard_normal(n)
    detector = LevelShiftDetector()
    sizes = []
    for week in range(3):
        found = feed_from(detector, y, 7 * 1440 * week, 7 * 1440 * (week + 1))
        assert all(a is None for a in found)
        sizes.append(len(pickle.dumps(detector)))
    assert max(sizes) < 40 * 1024
    assert sizes[2] - sizes[1] < 8 * 1024  # full-grown after two weeks


def feed_from(detector: LevelShiftDetector, values: np.ndarray, start: int, end: int) -> list[Anomaly | None]:
    out = []
    for i in range(start, end):
        x = {"t": T0 + MINUTE * i, "y": float(values[i])}
        detector.score_one(x)
        detector.learn_one(x)
        out.append(detector.anomaly())
    return out
