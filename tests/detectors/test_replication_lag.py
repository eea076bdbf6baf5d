"""ReplicationLagDetector on generated lag series: stalls, thresholds, spikes, silences, noise."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from vigil.detectors.base import Anomaly, SeriesDetector
from vigil.detectors.replication_lag import ReplicationLagDetector

T0 = 1_700_000_000.0
STEP = 10.0
HOUR = 3600.0


def feed(det: SeriesDetector, ts: np.ndarray, ys: np.ndarray) -> list[Anomaly | None]:
    """The anomaly after each point, fed as the runner feeds it; NaN is a bucket with no report."""
    out: list[Anomaly | None] = []
    for t, y in zip(ts, ys, strict=True):
        x = {"t": float(t)} if math.isnan(y) else {"t": float(t), "y": float(y)}
        score = det.score_one(x)
        assert 0.0 <= score <= 1.0
        det.learn_one(x)
        out.append(det.anomaly())
    return out


def noisy(seed: int, seconds: float, step: float = STEP) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(0.0, seconds, step)
    return ts, rng.uniform(0.0, 3.0, len(ts))


def stall_series(seed: int, step: float = STEP, warmup: float = HOUR, stall_for: float = 240.0):
    """Noise, then lag growing 1 s/s from `stall` for `stall_for` s, then caught up."""
    ts, ys = noisy(seed, warmup + stall_for + 600.0, step)
    stall = T0 + warmup + float(np.random.default_rng(seed + 1000).uniform(0.0, step))
    growing = (ts >= stall) & (ts < stall + stall_for)
    ys[growing] += ts[growing] - stall
    return ts, ys, stall


def openings(anomalies: list[Anomaly | None]) -> int:
    return sum(1 for prev, a in zip([None, *anomalies], anomalies, strict=False) if a is not None and prev is None)


@pytest.mark.parametrize("seed", range(12))
def test_stall_is_flagged_within_a_minute_with_its_onset(seed: int) -> None:
    ts, ys, stall = stall_series(seed)
    anomalies = feed(ReplicationLagDetector(), ts, ys)

    flagged = [t for t, a in zip(ts, anomalies, strict=True) if a is not None]
    first = flagged[0]
    assert stall < first <= stall + 60.0
    a = anomalies[list(ts).index(first)]
    assert a is not None
    assert a.severity == "warning"
    assert "growing" in a.summary
    assert abs(a.onset - stall) <= 20.0
    # One finding: the onset holds while it escalates to critical over the threshold, then it closes.
    assert openings(anomalies) == 1
    during = [x for x in anomalies if x is not None]
    assert {x.onset for x in during} == {a.onset}
    assert during[-1].severity == "critical"
    assert "over threshold" in during[-1].summary
    assert anomalies[-1] is None


def test_over_threshold_needs_for_seconds_of_reports() -> None:
    ts, ys = noisy(1, 2 * HOUR)
    step_at = T0 + HOUR
    ys[(ts >= step_at) & (ts < step_at + 300.0)] = 45.0
    anomalies = feed(ReplicationLagDetector(), ts, ys)

    i = list(ts).index(step_at)
    assert anomalies[i] is None and anomalies[i + 1] is None  # 0 s and 10 s over: not yet
    a = anomalies[i + 2]  # 20 s over: `for_seconds`
    assert a is not None
    assert a.severity == "critical"
    assert a.onset == step_at
    assert a.observed == 45.0
    assert "over threshold" in a.summary and "45.0 s" in a.summary
    assert openings(anomalies) == 1
    # Closed 30 s after the lag is back in the band.
    back = list(ts).index(step_at + 300.0)
    assert anomalies[back + 2] is not None and anomalies[back + 3] is None


def test_over_threshold_fires_without_a_baseline() -> None:
    ts = T0 + np.arange(0.0, 300.0, STEP)
    ys = np.full(len(ts), 500.0)
    anomalies = feed(ReplicationLagDetector(), ts, ys)
    assert anomalies[1] is None
    a = anomalies[2]
    assert a is not None and a.severity == "critical" and a.onset == T0


@pytest.mark.parametrize("seed", range(5))
def test_spikes_that_recover_are_not_anomalies(seed: int) -> None:
    ts, ys = noisy(seed, 4 * HOUR)
    spikes = [[15.0], [15.0, 15.0], [40.0], [40.0, 40.0], [90.0], [8.0, 15.0], [20.0, 12.0], [35.0, 60.0]]
    for k, spike in enumerate(spikes):
        i = int((HOUR + k * 600.0) / STEP)
        ys[i : i + len(spike)] = spike
    anomalies = feed(ReplicationLagDetector(), ts, ys)
    assert all(a is None for a in anomalies)


def test_a_week_of_noise_is_quiet() -> None:
    ts, ys = noisy(7, 7 * 86400.0)
    assert len(ts) == 60_480
    anomalies = feed(ReplicationLagDetector(), ts, ys)
    assert all(a is None for a in anomalies)


def test_stopped_reporting_fires_after_the_stale_window_and_closes_on_resume() -> None:
    ts, ys = noisy(3, 2 * HOUR)
    last = T0 + HOUR
    silent = (ts > last) & (ts < last + 600.0)
    ys[silent] = np.nan
    anomalies = feed(ReplicationLagDetector(), ts, ys)

    i = list(ts).index(last)
    assert all(a is None for a in anomalies[: i + 12])  # up to 110 s of silence
    a = anomalies[i + 12]  # 120 s
    assert a is not None
    assert a.severity == "warning"
    assert a.onset == last + STEP
    assert "stopped reporting" in a.summary
    resumed = list(ts).index(last + 600.0)
    assert all(x is not None and x.onset == a.onset for x in anomalies[i + 12 : resumed])
    assert anomalies[resumed] is None
    assert openings(anomalies) == 1


def test_stale_window_scales_with_a_slow_report_interval() -> None:
    ts, ys = noisy(4, 6 * HOUR, step=60.0)
    last = T0 + 3 * HOUR
    ys[ts > last] = np.nan
    anomalies = feed(ReplicationLagDetector(), ts, ys)
    i = list(ts).index(last)
    # Every 60 s: four missed reports, not 120 s, make a stop.
    assert anomalies[i + 3] is None
    a = anomalies[i + 4]
    assert a is not None and a.onset == last + 60.0


def test_sparse_reports_in_fine_buckets_are_not_a_stop() -> None:
    # The runner's buckets are 1 s and the replica reports every 10 s: nine empty buckets in ten.
    ts = T0 + np.arange(0.0, HOUR, 1.0)
    ys = np.full(len(ts), np.nan)
    ys[::10] = np.random.default_rng(5).uniform(0.0, 3.0, len(ts[::10]))
    anomalies = feed(ReplicationLagDetector(), ts, ys)
    assert all(a is None for a in anomalies)


def test_cold_start_never_fires_for_silence() -> None:
    ts = T0 + np.arange(0.0, HOUR, STEP)
    assert all(a is None for a in feed(ReplicationLagDetector(), ts, np.full(len(ts), np.nan)))
    ys = np.full(len(ts), np.nan)
    ys[:3] = [1.0, 2.0, 1.0]  # fewer reports than make a habit
    assert all(a is None for a in feed(ReplicationLagDetector(), ts, ys))


def test_cold_start_growth_needs_a_baseline() -> None:
    # Growth from the first report is judged only by the threshold: there is no band to leave yet.
    ts = T0 + np.arange(0.0, 25.0, 1.0)
    anomalies = feed(ReplicationLagDetector(), ts, 2.0 + (ts - T0))
    assert all(a is None for a in anomalies)


@pytest.mark.parametrize(("step", "bound"), [(1.0, 30.0), (30.0, 120.0), (60.0, 180.0)])
def test_any_report_interval(step: float, bound: float) -> None:
    ts, ys, stall = stall_series(11, step=step, warmup=6 * HOUR if step > 10 else HOUR, stall_for=600.0)
    anomalies = feed(ReplicationLagDetector(), ts, ys)
    first = next(t for t, a in zip(ts, anomalies, strict=True) if a is not None)
    assert stall < first <= stall + bound
    assert openings(anomalies) == 1
    quiet_ts, quiet_ys = noisy(12, 86400.0, step)
    assert all(a is None for a in feed(ReplicationLagDetector(), quiet_ts, quiet_ys))


def test_a_new_level_is_learned_and_growth_from_it_is_caught() -> None:
    ts, ys, stall = stall_series(13, warmup=4 * HOUR)
    ys[ts >= T0 + HOUR] += 10.0  # from 0-3 s to 10-13 s, for good
    anomalies = feed(ReplicationLagDetector(), ts, ys)
    first = next(t for t, a in zip(ts, anomalies, strict=True) if a is not None)
    assert stall < first <= stall + 60.0
    assert openings(anomalies) == 1


def test_pickle_round_trip_mid_stream_behaves_identically() -> None:
    ts, ys, stall = stall_series(21)
    cut = int(np.searchsorted(ts, stall + 15.0))  # inside the stall, before it is flagged
    det = ReplicationLagDetector()
    feed(det, ts[:cut], ys[:cut])
    copy = pickle.loads(pickle.dumps(det))
    rest_a = feed(det, ts[cut:], ys[cut:])
    rest_b = feed(copy, ts[cut:], ys[cut:])
    assert rest_a == rest_b
    assert openings(rest_a) == 1


def test_score_one_does_not_learn() -> None:
    ts, ys = noisy(22, HOUR + 10.0)
    det = ReplicationLagDetector()
    feed(det, ts[:360], ys[:360])
    before = pickle.dumps(det)
    for x in ({"t": float(ts[360]), "y": 50.0}, {"t": float(ts[360])}, {"t": float(ts[360]), "y": 1.0}):
        det.score_one(x)
    assert pickle.dumps(det) == before
    assert det.score_one({"t": float(ts[360]), "y": 1.0}) == 0.0
    assert det.score_one({"t": float(ts[360]), "y": 30.0}) == 1.0
