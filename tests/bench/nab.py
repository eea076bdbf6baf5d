"""Numenta Anomaly Benchmark (NAB v1.1 scoring) for Vigil's level-shift detector.

    .venv/bin/python -m tests.bench.nab [--data /work/shared/data/nab] [--threshold X] [--reference]

NAB is 58 labelled series (365,558 points, 116 anomaly windows). Each anomaly is a window around the
labelled point; a detection inside a window earns a scaled sigmoid of how early in the window it came
(only the earliest detection per window counts), a window with none costs the profile's FN weight,
and a detection outside every window costs the FP weight, scaled by a sigmoid of how far it lies past
the preceding window. The first 15% of each file (at most 750 points) is probationary and not scored.
Raw scores are normalised so the null detector (never fires) gets 0 and the perfect one (fires at the
first point of every window) gets 100. Three application profiles weigh FP and FN differently:
standard, reward_low_FP_rate and reward_low_FN_rate. This follows numenta/NAB's ``nab/sweeper.py``,
``nab/optimizer.py``, ``nab/runner.py`` (normalise) and ``config/profiles.json``.

The detector is fed each file as Vigil's runner feeds it (``score_one`` then ``learn_one`` then
``anomaly()``). Its NAB anomaly score at a point is the score of a finding that *opens* there and 0
elsewhere: an alert fires once per finding, as in production. It prints, per profile:

* ``optimised``: NAB's threshold sweep over those finding scores (the best threshold per profile);
* ``fixed``: every finding the detector opens with its own threshold (``--threshold`` overrides it),
  i.e. what Vigil alerts on, with no tuning against the labels;
* ``score_one``: NAB's sweep over the raw per-point ``score_one`` stream, for comparison;

then detector speed in points/s. ``--reference`` also scores NAB's own windowedGaussian detector,
reimplemented here, to check the scorer against NAB's published numbers. It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vigil.detectors.level_shift import LevelShiftDetector

DEFAULT_DATA = Path("/work/shared/data/nab")
PROBATION_PERCENT = 0.15
PROBATION = "probationary"  # the window key of points in the probationary period

# config/profiles.json (tnWeight is unused by NAB's scoring).
PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0},
    "reward_low_FP_rate": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22, "tnWeight": 1.0},
    "reward_low_FN_rate": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11, "tnWeight": 1.0},
}


@dataclass(frozen=True, slots=True)
class DataFile:
    """One NAB series with its anomaly windows as inclusive row-index ranges."""

    name: str  # e.g. "realKnownCause/nyc_taxi.csv"
    times: np.ndarray  # unix seconds
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class SweepRow:
    """A scorable point: the detector's score, what detecting it is worth, and the window it is in."""

    score: float
    sweep_score: float
    window: str | None  # "<file>|<index>", None outside every window, PROBATION during probation


@dataclass(frozen=True, slots=True)
class ThresholdScore:
    threshold: float
    score: float
    tp: int
    tn: int
    fp: int
    fn: int


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def scaled_sigmoid(position: float) -> float:
    """NAB's reward for a detection at a relative position: -1 is a window's left edge, 0 its right edge."""
    if position >= 3.0:
        return -1.0  # FP far behind the window: full penalty
    return 2.0 * sigmoid(-5.0 * position) - 1.0


def probation_length(rows: int) -> float:
    # sweeper._getProbationaryLength: 15%, but never more than 15% of 5000 rows.
    return min(math.floor(PROBATION_PERCENT * rows), PROBATION_PERCENT * 5000)


def sweep_file(
    name: str, scores: Sequence[float], windows: Sequence[tuple[int, int]], cost: dict[str, float]
) -> list[SweepRow]:
    """What each point of one file is worth if detected (sweeper.calcSweepScore)."""
    max_tp = scaled_sigmoid(-1.0)
    probation = probation_length(len(scores))
    pending = list(windows)
    rows: list[SweepRow] = []
    cur: tuple[int, int] | None = None
    cur_name: str | None = None
    prev_right: int | None = None
    prev_width = 0.0
    for i, score in enumerate(scores):
        if pending and i == pending[0][0]:
            cur = pending.pop(0)
            cur_name = f"{name}|{cur[0]}"
        if cur is not None:
            width = float(cur[1] - cur[0] + 1)
            # Same as NAB: the first point of a window is at -1.0, the last at -1/width.
            weighted = scaled_sigmoid(-(cur[1] - i + 1) / width) * cost["tpWeight"] / max_tp
        else:
            past = 3.0 if prev_right is None else abs(prev_right - i) / (prev_width - 1.0)
            weighted = scaled_sigmoid(past) * cost["fpWeight"]
        rows.append(SweepRow(float(score), weighted, cur_name if i >= probation else PROBATION))
        if cur is not None and i == cur[1]:
            prev_right, prev_width = i, float(cur[1] - cur[0] + 1)
            cur, cur_name = None, None
    return rows


def scores_by_threshold(rows: Sequence[SweepRow], cost: dict[str, float]) -> list[ThresholdScore]:
    """The corpus score at every distinct threshold, highest threshold first (sweeper.calcScoreByThreshold).

    A point is detected when its score >= threshold. Each window is worth its best detected point (the
    earliest, as the sigmoid falls through the window) or -fnWeight; every detected point outside a
    window adds its (negative) sweep score.
    """
    scorable = sorted((r for r in rows if r.window != PROBATION), key=lambda r: r.score, reverse=True)
    parts: dict[str, float] = {r.window: -cost["fnWeight"] for r in scorable if r.window is not None}
    fp_total = 0.0
    tn = sum(1 for r in scorable if r.window is None)
    fn = len(scorable) - tn
    tp = fp = 0
    out: list[ThresholdScore] = []
    threshold = 1.1  # above every score: nothing detected
    for r in scorable:
        if r.score != threshold:
            out.append(ThresholdScore(threshold, fp_total + sum(parts.values()), tp, tn, fp, fn))
            threshold = r.score
        if r.window is None:
            fp, tn = fp + 1, tn - 1
            fp_total += r.sweep_score
        else:
            tp, fn = tp + 1, fn - 1
            parts[r.window] = max(parts[r.window], r.sweep_score)
    out.append(ThresholdScore(threshold, fp_total + sum(parts.values()), tp, tn, fp, fn))
    return out


def optimise(rows: Sequence[SweepRow], cost: dict[str, float]) -> ThresholdScore:
    """NAB's optimiser: the threshold with the best corpus score (the highest such threshold on ties)."""
    return max(scores_by_threshold(rows, cost), key=lambda s: s.score)


def score_at(rows: Sequence[SweepRow], cost: dict[str, float], threshold: float) -> float:
    """The raw corpus score when points scoring >= threshold are detections."""
    parts: dict[str, float] = {}
    fp_total = 0.0
    for r in rows:
        if r.window == PROBATION:
            continue
        if r.window is None:
            if r.score >= threshold:
                fp_total += r.sweep_score
        else:
            best = parts.get(r.window, -cost["fnWeight"])
            parts[r.window] = max(best, r.sweep_score) if r.score >= threshold else best
    return fp_total + sum(parts.values())


def normalise(raw: float, cost: dict[str, float], windows: int) -> float:
    """0 for the null detector (every window a FN), 100 for the perfect one (every window at its left edge)."""
    null = -cost["fnWeight"] * windows
    perfect = cost["tpWeight"] * windows
    return 100.0 * (raw - null) / (perfect - null)


def load_corpus(data: Path) -> list[DataFile]:
    with (data / "labels" / "combined_windows.json").open() as f:
        labels: dict[str, list[list[str]]] = json.load(f)
    files = []
    for name in sorted(labels):
        frame = pd.read_csv(data / "data" / name)
        stamps = pd.to_datetime(frame["timestamp"])
        index = {ts: i for i, ts in enumerate(stamps)}
        # Window limits are timestamps of rows of the file, as NAB requires.
        windows = tuple((index[pd.Timestamp(a)], index[pd.Timestamp(b)]) for a, b in labels[name])
        # Naive timestamps taken as UTC; the unit of datetime64 varies with pandas versions.
        times = ((stamps - pd.Timestamp(0)) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)
        files.append(DataFile(name, times, frame["value"].to_numpy(dtype=np.float64), windows))
    return files


@dataclass(frozen=True, slots=True)
class Run:
    """One detector's output on one file."""

    name: str
    opened: list[float]  # the score of a finding opened at each point, 0 where none opened
    raw: list[float]  # score_one at each point
    seconds: float


def run_detector(args: tuple[DataFile, float | None]) -> Run:
    file, threshold = args
    detector = LevelShiftDetector() if threshold is None else LevelShiftDetector(threshold=threshold)
    opened: list[float] = []
    raw: list[float] = []
    last_onset: float | None = None
    start = time.perf_counter()
    for t, y in zip(file.times.tolist(), file.values.tolist(), strict=True):
        x = {"t": t, "y": y}
        raw.append(detector.score_one(x))
        detector.learn_one(x)
        found = detector.anomaly()
        if found is not None and found.onset != last_onset:
            opened.append(found.score)
        else:
            opened.append(0.0)
        last_onset = None if found is None else found.onset
    return Run(file.name, opened, raw, time.perf_counter() - start)


def _normal_tail(x: float, mean: float, std: float) -> float:
    """P(X > x) for X ~ N(mean, std), mirrored below the mean (nupic's normalProbability)."""
    z = abs(x - mean) / std
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def run_windowed_gaussian(args: tuple[DataFile, float | None]) -> Run:
    """NAB's windowedGaussian detector: tail probability under a Gaussian of the last 6400 points, refit every 100."""
    file, _ = args
    window: list[float] = []
    step: list[float] = []
    mean, std = 0.0, 1.0
    scores: list[float] = []
    start = time.perf_counter()
    for y in file.values.tolist():
        scores.append(1.0 - _normal_tail(y, mean, std) if window else 0.0)
        if len(window) < 6400:
            window.append(y)
            refit = True
        else:
            step.append(y)
            refit = len(step) == 100
            if refit:
                window = window[100:] + step
                step = []
        if refit:
            mean, std = float(np.mean(window)), float(np.std(window))
            std = std or 0.000001
    return Run(file.name, scores, scores, time.perf_counter() - start)


def sweep_corpus(files: Sequence[DataFile], runs: Sequence[Run], field: str, cost: dict[str, float]) -> list[SweepRow]:
    rows: list[SweepRow] = []
    for file, run in zip(files, runs, strict=True):
        rows.extend(sweep_file(file.name, getattr(run, field), file.windows, cost))
    return rows


def report(files: Sequence[DataFile], runs: Sequence[Run], fields: Sequence[str], fixed: bool) -> None:
    windows = sum(len(f.windows) for f in files)
    print(f"{'profile':<20} {'stream':<10} {'threshold':>10} {'score':>7} {'TP':>6} {'FP':>6}")
    for profile, cost in PROFILES.items():
        for field in fields:
            rows = sweep_corpus(files, runs, field, cost)
            best = optimise(rows, cost)
            label = "optimised" if field == "opened" else field
            print(
                f"{profile:<20} {label:<10} {best.threshold:>10.4f} {normalise(best.score, cost, windows):>7.1f}"
                f" {best.tp:>6} {best.fp:>6}"
            )
            if fixed and field == "opened":
                # Every opened finding scores > 0: threshold just above 0 takes them all.
                raw = score_at(rows, cost, sys.float_info.min)
                print(f"{profile:<20} {'fixed':<10} {'default':>10} {normalise(raw, cost, windows):>7.1f}")


def score_runs(
    files: Sequence[DataFile], runner: Callable[[tuple[DataFile, float | None]], Run], threshold: float | None
) -> tuple[list[Run], float]:
    start = time.perf_counter()
    with multiprocessing.Pool() as pool:
        runs = pool.map(runner, [(f, threshold) for f in files])
    return runs, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NAB checkout with data/ and labels/")
    parser.add_argument("--threshold", type=float, default=None, help="the detector's threshold (default: its own)")
    parser.add_argument("--reference", action="store_true", help="also score NAB's windowedGaussian detector")
    args = parser.parse_args(argv)
    if not (args.data / "labels" / "combined_windows.json").is_file() or not (args.data / "data").is_dir():
        print(f"NAB data not found under {args.data} (need data/ and labels/combined_windows.json)", file=sys.stderr)
        return 2
    files = load_corpus(args.data)
    points = sum(len(f.values) for f in files)
    print(f"NAB: {len(files)} files, {points} points, {sum(len(f.windows) for f in files)} windows")

    if args.reference:
        runs, _ = score_runs(files, run_windowed_gaussian, None)
        print("\nwindowedGaussian (NAB reference; published: standard 39.6, low FP 20.9, low FN 47.4)")
        report(files, runs, ["raw"], fixed=False)

    runs, wall = score_runs(files, run_detector, args.threshold)
    busy = sum(r.seconds for r in runs)
    own = LevelShiftDetector().threshold
    print(f"\nLevelShiftDetector (threshold {f'{own} (its own)' if args.threshold is None else args.threshold})")
    report(files, runs, ["opened", "raw"], fixed=True)
    print(f"\nspeed: {points / busy:,.0f} points/s per core ({busy:.1f} s detector time, {wall:.1f} s wall)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
