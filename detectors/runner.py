"""Feeding closed buckets to detectors, behind a stored watermark, and keeping findings.

A `Family` is one kind of detection over one source: it reads the buckets of many series for a
time range and makes a detector for each new series. The `DetectorRunner` drives one family:

- It consumes only *closed* buckets: a bucket ending at E is read once the clock passes
  E + grace, so late rows inside the grace are seen and a bucket is never read half-filled.
- Every known series gets every bucket, oldest first, with no ``"y"`` when it had no data
  (sparse series, stopped reporters). Series silent for `series_ttl` are forgotten.
- After each chunk of buckets it writes the findings that changed, then saves the models
  and the watermark. A crash between the two replays the chunk from the previous state:
  detectors are deterministic and finding ids derive from (series, onset), so the replay
  rewrites the same findings. Nothing is lost, nothing is doubled.

The same runner runs inside `vigil serve` (a thread) and as `vigil detect`.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from vigil.detectors.base import Anomaly, SeriesDetector
from vigil.store.findings import DetectorState, Finding, FindingStore, finding_id

__all__ = ["Buckets", "DetectorRunner", "Family", "SeriesInfo"]

logger = logging.getLogger(__name__)

# Buckets read per query while catching up (a backfill reads a week as ~7 queries per family).
_CHUNK_BUCKETS = 1440
# An open finding is rewritten when its observed value moves this much (relative), so the
# API shows how bad it got without a write per bucket.
_REWRITE_CHANGE = 0.1

# One bucket: its start (unix seconds) and the value of each series that had data: a number
# (the observation's "y"), or the observation's fields when a detector needs more than one
# (e.g. errors "y" and requests "n").
Buckets = Iterable[tuple[float, Mapping[str, float | Mapping[str, float]]]]


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """What a finding on a series is about."""

    service: str
    operation: str
    signal: str
    unit: str


class Family(Protocol):
    """One kind of detection over one source of buckets."""

    name: str  # the key of the family's watermark and state; change it and history is replayed
    kind: str  # the findings' kind
    step: float  # bucket width in seconds

    def buckets(self, start: float, end: float) -> Buckets:
        """Every bucket starting in [start, end), oldest first (buckets with no series may be left out)."""
        ...

    def new_detector(self, series: str) -> SeriesDetector: ...

    def absent_value(self, series: str) -> float | None:
        """The value of a bucket in which `series` had no rows: 0 for counts, None for "no data"."""
        ...

    def describe(self, series: str) -> SeriesInfo: ...

    def enrich(self, finding: Finding, now: float) -> Finding:
        """The finding with its evidence (deploy, exemplars, attributes) when it opens."""
        ...


@dataclass(slots=True)
class _Series:
    detector: SeriesDetector
    last_seen: float
    open: Finding | None = None
    # The open finding's summary with the detector's sentence as "{}": what `enrich` wrapped
    # around it (the template, the deploy), kept when the detector's sentence is rewritten.
    summary_frame: str = "{}"


@dataclass(slots=True)
class _State:
    series: dict[str, _Series] = field(default_factory=dict)


class DetectorRunner:
    """Drives one `Family` over closed buckets; see the module docstring."""

    def __init__(
        self,
        family: Family,
        store: FindingStore,
        *,
        grace: float = 30.0,
        series_ttl: float = 7 * 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.family = family
        self.store = store
        self.grace = grace
        self.series_ttl = series_ttl
        self.clock = clock
        self._state = _State()
        self.watermark: float | None = None
        self._restore()

    def _restore(self) -> None:
        saved = self.store.load_state(self.family.name)
        if saved is None:
            return
        try:
            state = pickle.loads(saved.state)
        except Exception:
            # A model saved by an incompatible version: start cold rather than not at all.
            logger.exception("cannot restore detector %s; its models start afresh", self.family.name)
            state = _State()
        self._state = state
        self.watermark = saved.watermark

    @property
    def series_count(self) -> int:
        return len(self._state.series)

    def closed_until(self, now: float | None = None) -> float:
        """The end of the newest bucket that is closed at `now`."""
        now = self.clock() if now is None else now
        step = self.family.step
        return math.floor((now - self.grace) / step) * step

    def reset(self, start: float) -> None:
        """Forget models, watermark and the findings that started from `start` on: a backfill."""
        self.store.delete_since(self.family.kind, start)
        self._state = _State()
        self.watermark = math.floor(start / self.family.step) * self.family.step

    def run(self, until: float | None = None, *, progress: Callable[[int], None] | None = None) -> int:
        """Consume every closed bucket up to `until` (default: now); returns how many buckets."""
        end = self.closed_until() if until is None else min(until, self.closed_until())
        step = self.family.step
        if self.watermark is None:
            # A first start looks back one bucket only; `vigil detect --backfill` replays history.
            self.watermark = end - step
        consumed = 0
        while self.watermark < end:
            chunk_end = min(end, self.watermark + _CHUNK_BUCKETS * step)
            consumed += self._run_chunk(self.watermark, chunk_end)
            if progress is not None:
                progress(int((chunk_end - self.watermark) // step))
            self.watermark = chunk_end
            self.store.save_state(self.family.name, DetectorState(chunk_end, pickle.dumps(self._state)))
        return consumed

    def _run_chunk(self, start: float, end: float) -> int:
        step = self.family.step
        by_start = {t: values for t, values in self.family.buckets(start, end)}
        changed: dict[str, Finding] = {}
        t = start
        count = 0
        while t < end:
            self._feed(t, by_start.get(t, {}), changed)
            t += step
            count += 1
        self.store.write(list(changed.values()))
        return count

    def _feed(self, t: float, values: Mapping[str, float | Mapping[str, float]], changed: dict[str, Finding]) -> None:
        series = self._state.series
        for key in values:
            if key not in series:
                series[key] = _Series(detector=self.family.new_detector(key), last_seen=t)
        for key, entry in list(series.items()):
            value = values.get(key)
            if value is None:
                value = self.family.absent_value(key)
            else:
                entry.last_seen = t
            if value is None and entry.open is None and t - entry.last_seen > self.series_ttl:
                del series[key]
                continue
            x: dict[str, float]
            if value is None:
                x = {"t": t}
            elif isinstance(value, Mapping):
                x = {**value, "t": t}
            else:
                x = {"t": t, "y": value}
            entry.detector.score_one(x)
            entry.detector.learn_one(x)
            self._track(key, entry, entry.detector.anomaly(), t + self.family.step, changed)

    def _track(
        self, key: str, entry: _Series, anomaly: Anomaly | None, now: float, changed: dict[str, Finding]
    ) -> None:
        family = self.family
        if anomaly is None:
            if entry.open is not None:
                closed = replace(entry.open, status="closed", ended_at=now - family.step)
                changed[closed.id] = closed
                entry.open = None
            return
        if entry.open is None or entry.open.started_at != anomaly.onset:
            if entry.open is not None:
                # The detector re-based the excursion: the old finding ends where the new one starts.
                closed = replace(entry.open, status="closed", ended_at=anomaly.onset)
                changed[closed.id] = closed
            info = family.describe(key)
            finding = Finding(
                id=finding_id(family.kind, key, anomaly.onset),
                kind=family.kind,
                service=info.service,
                operation=info.operation,
                signal=info.signal,
                series=key,
                started_at=anomaly.onset,
                ended_at=None,
                status="open",
                severity=anomaly.severity,
                score=anomaly.score,
                baseline=anomaly.baseline,
                observed=anomaly.observed,
                unit=info.unit,
                summary=anomaly.summary,
            )
            try:
                finding = family.enrich(finding, now)
            except Exception:
                # Evidence is a nicety; the finding itself must not be lost over it.
                logger.exception("cannot gather evidence for finding %s", finding.id)
            before, found, after = finding.summary.partition(anomaly.summary)
            entry.summary_frame = (
                before.replace("{", "{{").replace("}", "}}") + "{}" + after.replace("{", "{{").replace("}", "}}")
                if found
                else "{}"
            )
            entry.open = finding
            changed[finding.id] = finding
            return
        current = entry.open
        moved = abs(anomaly.observed - current.observed) > _REWRITE_CHANGE * max(abs(current.observed), 1e-9)
        if moved or anomaly.severity != current.severity:
            updated = replace(
                current,
                severity=anomaly.severity,
                score=anomaly.score,
                observed=anomaly.observed,
                summary=getattr(entry, "summary_frame", "{}").format(anomaly.summary),
            )
            entry.open = updated
            changed[updated.id] = updated
