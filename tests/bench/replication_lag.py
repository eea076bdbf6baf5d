"""Replication-lag benchmark: time to flag a stall, findings on spikes and noise, throughput.

    .venv/bin/python -m tests.bench.replication_lag [--runs 200] [--seed 1]

Series are generated (seeded numpy): a replica reports lag every 10 s, uniform 0-3 s noise.

* **stall**: per run, 2 h of noise, then a stall at a random phase within the report interval,
  lag growing 1 s/s on top of the noise. It prints the time to flag (median, p95, max; target
  <= 60 s) of ``ReplicationLagDetector`` and of the common mysqld_exporter rule
  ``mysql_slave_status_seconds_behind_master > 30 for 1m`` evaluated on the same reports, plus how
  far the detector's onset lies from the true start and any finding before the stall. A short
  table repeats the stall at 1, 30 and 60 s report intervals.
* **spikes**: per run, 12 h of noise with a spike every 10 min that recovers on its own: one or
  two reports of 6-90 s, or a two-report rise; findings of both (target zero).
* **noise**: 7 simulated days of noise (60,480 reports); findings (target zero).
* **throughput**: reports per second through ``score_one``, ``learn_one``, ``anomaly`` for one
  detector (and its pickled state with a full window), and for 10,000 replicas fed round-robin.

It asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import pickle
import time

import numpy as np

from vigil.detectors.replication_lag import ReplicationLagDetector

T0 = 1_700_000_000.0
STEP = 10.0
HOUR = 3600.0


def feed(det: ReplicationLagDetector, ts: np.ndarray, ys: np.ndarray) -> list[bool]:
    """Whether an anomaly is open after each report."""
    out: list[bool] = []
    for t, y in zip(ts.tolist(), ys.tolist(), strict=True):
        x = {"t": t} if math.isnan(y) else {"t": t, "y": y}
        det.score_one(x)
        det.learn_one(x)
        out.append(det.anomaly() is not None)
    return out


def openings(flags: list[bool]) -> int:
    return sum(1 for prev, now in zip([False, *flags], flags, strict=False) if now and not prev)


def prometheus_rule(ts: np.ndarray, ys: np.ndarray, threshold: float = 30.0, hold: float = 60.0) -> list[bool]:
    """``lag > threshold for hold``, evaluated at each report: pending from the first true one, firing after hold."""
    out: list[bool] = []
    pending: float | None = None
    for t, y in zip(ts.tolist(), ys.tolist(), strict=True):
        if math.isnan(y) or y <= threshold:
            pending = None
        elif pending is None:
            pending = t
        out.append(pending is not None and t - pending >= hold)
    return out


def stall_run(rng: np.random.Generator, step: float, warmup: float) -> tuple[np.ndarray, np.ndarray, float]:
    ts = T0 + np.arange(0.0, warmup + 600.0, step)
    ys = rng.uniform(0.0, 3.0, len(ts))
    stall = T0 + warmup + float(rng.uniform(0.0, step))
    growing = ts >= stall
    ys[growing] += ts[growing] - stall
    return ts, ys, stall


def first_after(ts: np.ndarray, flags: list[bool], start: float) -> float:
    for t, flag in zip(ts.tolist(), flags, strict=True):
        if flag and t >= start:
            return t - start
    return math.inf


def stats(values: list[float]) -> str:
    a = np.array(values)
    return f"median {np.median(a):6.1f} s   p95 {np.percentile(a, 95):6.1f} s   max {a.max():6.1f} s"


def bench_stall(runs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ours: list[float] = []
    rule: list[float] = []
    onset_err: list[float] = []
    early = 0
    for _ in range(runs):
        ts, ys, stall = stall_run(rng, STEP, 2 * HOUR)
        det = ReplicationLagDetector()
        flags = feed(det, ts, ys)
        early += openings([f for t, f in zip(ts.tolist(), flags, strict=True) if t < stall])
        ours.append(first_after(ts, flags, stall))
        # The onset the detector reports when it flags: replay up to that report.
        replay = ReplicationLagDetector()
        cut = int(np.searchsorted(ts, stall + ours[-1], side="right"))
        feed(replay, ts[:cut], ys[:cut])
        anomaly = replay.anomaly()
        onset_err.append(abs(anomaly.onset - stall) if anomaly is not None else math.inf)
        rule.append(first_after(ts, prometheus_rule(ts, ys), stall))
    print(f"1 s/s stall, reports every {STEP:.0f} s, 0-3 s noise, {runs} runs (time from stall start to flag)")
    print(f"  ReplicationLagDetector          {stats(ours)}   (target <= 60 s)")
    print(f"  lag > 30 for 1m (mysqld rule)   {stats(rule)}")
    print(f"  onset error                     {stats(onset_err)}")
    print(f"  findings before the stall       {early}")
    print("  other report intervals (50 runs each):")
    for step in (1.0, 30.0, 60.0):
        ours_i: list[float] = []
        rule_i: list[float] = []
        for _ in range(50):
            ts, ys, stall = stall_run(rng, step, max(2 * HOUR, 60 * step))
            ours_i.append(first_after(ts, feed(ReplicationLagDetector(), ts, ys), stall))
            rule_i.append(first_after(ts, prometheus_rule(ts, ys), stall))
        print(f"    every {step:2.0f} s: detector {stats(ours_i)} | rule {stats(rule_i)}")


def bench_spikes(runs: int, seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    ours = rule = spikes = 0
    for _ in range(runs):
        ts = T0 + np.arange(0.0, 12 * HOUR, STEP)
        ys = rng.uniform(0.0, 3.0, len(ts))
        for i in range(int(HOUR / STEP), len(ts) - 2, int(600.0 / STEP)):
            kind = rng.integers(3)
            if kind == 0:
                ys[i] = rng.uniform(6.0, 90.0)
            elif kind == 1:
                ys[i : i + 2] = rng.uniform(6.0, 90.0)
            else:
                low = rng.uniform(6.0, 30.0)
                ys[i : i + 2] = [low, low + rng.uniform(5.0, 60.0)]
            spikes += 1
        ours += openings(feed(ReplicationLagDetector(), ts, ys))
        rule += openings(prometheus_rule(ts, ys))
    print(f"spikes that recover: {spikes} spikes (1-2 reports of 6-90 s) in {runs} x 12 h")
    print(f"  findings: ReplicationLagDetector {ours}, lag > 30 for 1m {rule}   (target 0)")


def bench_noise(seed: int) -> None:
    rng = np.random.default_rng(seed + 2)
    ts = T0 + np.arange(0.0, 7 * 86400.0, STEP)
    ys = rng.uniform(0.0, 3.0, len(ts))
    det = ReplicationLagDetector()
    start = time.perf_counter()
    flags = feed(det, ts, ys)
    elapsed = time.perf_counter() - start
    print(f"7 days of 0-3 s noise every {STEP:.0f} s ({len(ts):,} reports): {openings(flags)} findings (target 0)")
    state = len(pickle.dumps(det)) / 1024
    print(f"throughput, one detector: {len(ts) / elapsed:,.0f} reports/s ({state:.1f} KiB pickled with a full window)")


def bench_fleet(seed: int, replicas: int = 10_000, reports: int = 120) -> None:
    rng = np.random.default_rng(seed + 3)
    ys = rng.uniform(0.0, 3.0, (reports, replicas)).tolist()
    detectors = [ReplicationLagDetector() for _ in range(replicas)]
    start = time.perf_counter()
    for k, row in enumerate(ys):
        t = T0 + k * STEP
        for det, y in zip(detectors, row, strict=True):
            x = {"t": t, "y": y}
            det.score_one(x)
            det.learn_one(x)
            det.anomaly()
    elapsed = time.perf_counter() - start
    total = replicas * reports
    print(
        f"throughput, {replicas:,} replicas x {reports} reports: {total / elapsed:,.0f} reports/s "
        f"({elapsed / reports * 1000:.0f} ms per 10 s round of all replicas)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    bench_stall(args.runs, args.seed)
    bench_spikes(args.runs, args.seed)
    bench_noise(args.seed)
    bench_fleet(args.seed)


if __name__ == "__main__":
    main()
