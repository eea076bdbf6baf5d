"""Detector throughput: buckets per second the runner scores for 10,000 series.

    .venv/bin/python -m tests.bench.detector_throughput [--series 10000] [--buckets 240]

An in-memory family hands the runner `--series` latency-like series (log-normal minutes around
per-series medians) for `--buckets` one-minute buckets, each series with the service-regression
detector (`LevelShiftDetector`, rises only). The runner works as in production: every series is
scored and learnt every bucket, findings and the pickled models with the watermark are written to
an embedded store after each chunk. Prints buckets/s (each bucket is every series scored once),
series-points/s, the pickled state's size and the time to save it, and one detector's footprint
(in memory and pickled) once it has followed a week of minutes. Asserts nothing.
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
import tracemalloc

import numpy as np

from vigil.detectors.base import SeriesDetector
from vigil.detectors.level_shift import LevelShiftDetector
from vigil.detectors.runner import Buckets, DetectorRunner, SeriesInfo
from vigil.store.client import open_client
from vigil.store.findings import DetectorState, Finding, FindingStore
from vigil.store.migrate import migrate
from vigil.store.schema import DdlContext

T0 = 1_700_000_000.0


class SyntheticLatency:
    name = "bench"
    kind = "bench"
    step = 60.0

    def __init__(self, series: int, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.keys = [f"svc-{i // 20}|op-{i % 20}|latency_p95" for i in range(series)]
        self.medians = rng.uniform(20, 500, series)
        self.rng = rng

    def buckets(self, start: float, end: float) -> Buckets:
        out = []
        t = start
        while t < end:
            values = self.medians * np.exp(self.rng.normal(0, 0.2, len(self.keys)))
            out.append((t, dict(zip(self.keys, values.tolist(), strict=True))))
            t += self.step
        return out

    def new_detector(self, series: str) -> SeriesDetector:
        return LevelShiftDetector(direction="up")

    def absent_value(self, series: str) -> float | None:
        return None

    def describe(self, series: str) -> SeriesInfo:
        service, operation, signal = series.split("|")
        return SeriesInfo(service, operation, signal, "ms")

    def enrich(self, finding: Finding, now: float) -> Finding:
        return finding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--buckets", type=int, default=240)
    args = parser.parse_args()
    client = open_client(f"chdb://{tempfile.mkdtemp(prefix='vigil-detector-bench-')}")
    migrate(client, DdlContext(database="bench"))
    store = FindingStore(client, "bench")
    family = SyntheticLatency(args.series)
    end = T0 + args.buckets * family.step
    runner = DetectorRunner(family, store, grace=0.0, clock=lambda: end)
    runner.reset(T0)
    began = time.perf_counter()
    runner.run()
    elapsed = time.perf_counter() - began
    state = pickle.dumps(runner._state)
    saved_at = time.perf_counter()
    store.save_state("bench-size", DetectorState(end, state))
    save_s = time.perf_counter() - saved_at
    print(f"{args.series:,} series x {args.buckets} buckets in {elapsed:.1f} s (state saved after each chunk)")
    print(f"  {args.buckets / elapsed:.2f} buckets/s, {args.series * args.buckets / elapsed:,.0f} series-points/s")
    per_series = len(state) / args.series / 1024
    print(f"  pickled models: {len(state) / 1e6:.1f} MB ({per_series:.1f} KiB a series), saved in {save_s:.2f} s")

    week = steady_state(7 * 1440)
    print(f"  one series after a week of minutes: {week[0]:.0f} KiB in memory, {week[1]:.0f} KiB pickled")


def steady_state(minutes: int) -> tuple[float, float]:
    """(KiB in memory, KiB pickled) of one detector that has followed `minutes` one-minute buckets."""
    rng = np.random.default_rng(2)
    values = 100 * np.exp(rng.normal(0, 0.2, minutes))
    tracemalloc.start()
    detector = LevelShiftDetector(direction="up")
    for i, y in enumerate(values.tolist()):
        x = {"t": T0 + 60.0 * i, "y": y}
        detector.score_one(x)
        detector.learn_one(x)
    in_memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return in_memory / 1024, len(pickle.dumps(detector)) / 1024


if __name__ == "__main__":
    main()
