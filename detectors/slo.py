"""SLOs at run time: counting good and total requests per minute, status, and burn-rate findings.

`SloCounter` keeps `slo_minutes` up to date: for each SLO, behind its own watermark, it counts the
closed minutes from spans (a new SLO, or one whose definition of "good" changed, is first counted
back over its window, as far as spans are retained).

`slo_status` is what ``GET /api/v1/slos`` shows: SLI and error budget over the SLO window, burn
rates over 5m ... 3d, and the multiwindow burn-rate alerts (`vigil.detectors.slo_burn`).

`SloBurn` is the detector family that turns those alerts into findings of kind ``slo_burn``: one
series per SLO and severity (``page``, ``ticket``); a finding opens in the minute an alert of that
severity starts firing (both its long and its short window at or above the threshold) and closes
when none fires. Its severity is ``critical`` for a page and ``warning`` for a ticket. A new
detector is primed with the counted minutes before its first bucket, so it judges the same
windows as ``GET /api/v1/slos`` from its first minute; a detector that could not be primed fires
a rule only once it has followed the rule's long window. A changed definition (objective, window,
alert rules, what is counted) starts new series.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import deque
from dataclasses import replace
from fractions import Fraction

from clickhouse_connect.driver.client import Client

from vigil.detectors.base import Anomaly, Observation, SeriesDetector
from vigil.detectors.runner import Buckets, SeriesInfo
from vigil.detectors.slo_burn import WORKBOOK_POLICY, BurnRule, SloStatus, evaluate, parse_window
from vigil.store.findings import DetectorState, Finding, FindingStore
from vigil.store.slos import SloDefinition, SloStore

__all__ = ["SloBurn", "SloBurnDetector", "SloCounter", "policy_of", "slo_status"]

_STEP = 60.0
# Counting reads raw spans; a day per query keeps one query's scan bounded.
_COUNT_CHUNK_S = 86400.0


def policy_of(slo: SloDefinition) -> tuple[BurnRule, ...]:
    """The SLO's own alert rules, or the Workbook's."""
    if not slo.alerts:
        return WORKBOOK_POLICY
    return tuple(BurnRule(r.severity, r.long_window, r.short_window, r.budget_fraction) for r in slo.alerts)  # type: ignore[arg-type]


class SloCounter:
    """Brings every SLO's per-minute counts up to a time; see the module docstring."""

    def __init__(self, client: Client, database: str, *, lookback_s: float) -> None:
        self.slos = SloStore(client, database)
        self.state = FindingStore(client, database)
        self.lookback_s = lookback_s  # how far back spans are kept (the traces retention)

    def count_until(self, end: float) -> int:
        """Count every SLO's minutes before `end` (a minute boundary); returns minutes counted."""
        counted = 0
        for slo in self.slos.all():
            key = f"slo_counts:{slo.name}:{slo.counting_key}"
            saved = self.state.load_state(key)
            start = saved.watermark if saved else math.floor((end - min(slo.window_s, self.lookback_s)) / _STEP) * _STEP
            while start < end:
                chunk_end = min(end, start + _COUNT_CHUNK_S)
                counted += self.slos.count_minutes(slo, start, chunk_end)
                self.state.save_state(key, DetectorState(chunk_end, b""))
                start = chunk_end
        return counted


def slo_status(store: SloStore, slo: SloDefinition, now: float) -> SloStatus:
    """SLI, budget, burn rates and alerts at `now` (the end of the last counted minute)."""
    minutes = store.minutes(slo, now - slo.window_s, now)
    return evaluate(minutes, objective=slo.objective, window_s=slo.window_s, now=now, policy=policy_of(slo))


class SloBurnDetector:
    """Burn-rate alerts of one severity for one SLO, fed one minute of counts at a time.

    Observations are ``{"t", "good", "total"}`` (absent: no traffic). Window sums are kept
    running, so a minute costs the same whatever the windows; comparisons are exact fractions.
    """

    def __init__(self, objective: float, window_s: float, rules: tuple[BurnRule, ...], severity: str) -> None:
        self.rules = rules
        self.severity = severity
        self.budget = 1 - Fraction(str(objective)) / 100
        self.thresholds = [rule.exact_threshold(window_s) for rule in rules]
        self.windows = sorted({parse_window(w) // 60 for r in rules for w in (r.long_window, r.short_window)})
        self.minutes: deque[tuple[int, int]] = deque(maxlen=max(self.windows))
        self.sums = {w: [0, 0] for w in self.windows}
        self.seen = 0  # minutes followed
        self.onset: float | None = None
        self._anomaly: Anomaly | None = None

    def score_one(self, x: Observation) -> float:
        return 0.0

    def learn_one(self, x: Observation) -> None:
        self._add(int(x.get("good", 0)), int(x.get("total", 0)))
        self._judge(x["t"])

    def prime(self, minutes: list[tuple[float, int, int]], start: float, end: float) -> None:
        """Follow the minutes [start, end) without judging them: the counted history before the
        first bucket this detector is fed (minutes without a row had no traffic)."""
        counted = {t: (good, total) for t, good, total in minutes}
        t = start
        while t < end:
            good, total = counted.get(t, (0, 0))
            self._add(good, total)
            t += 60.0

    def _add(self, good: int, total: int) -> None:
        for w, sums in self.sums.items():
            if len(self.minutes) >= w:
                old_good, old_total = self.minutes[-w]
                sums[0] -= old_total - old_good
                sums[1] -= old_total
            sums[0] += total - good
            sums[1] += total
        self.minutes.append((good, total))
        self.seen += 1

    def _burn(self, window: str) -> Fraction | None:
        bad, total = self.sums[parse_window(window) // 60]
        return None if total == 0 else Fraction(bad, total) / self.budget

    def _judge(self, t: float) -> None:
        firing = []
        for rule, threshold in zip(self.rules, self.thresholds, strict=True):
            if self.seen < parse_window(rule.long_window) // 60:
                continue  # the long window is not covered yet
            long_burn, short_burn = self._burn(rule.long_window), self._burn(rule.short_window)
            if long_burn is not None and short_burn is not None and long_burn >= threshold and short_burn >= threshold:
                firing.append((rule, threshold, long_burn, short_burn))
        if not firing:
            self.onset, self._anomaly = None, None
            return
        if self.onset is None:
            self.onset = t
        rule, threshold, long_burn, short_burn = max(firing, key=lambda f: f[2] / f[1])
        self._anomaly = Anomaly(
            onset=self.onset,
            baseline=float(threshold),
            observed=float(long_burn),
            score=1.0,
            severity="critical" if self.severity == "page" else "warning",
            summary=(
                f"burning its error budget at {float(long_burn):.1f}x over {rule.long_window} and "
                f"{float(short_burn):.1f}x over {rule.short_window} (the {self.severity} threshold is "
                f"{float(threshold):.3g}x: {rule.budget_fraction:.0%} of the budget in {rule.long_window})."
            ),
        )

    def anomaly(self) -> Anomaly | None:
        return self._anomaly


def _series(slo: SloDefinition, severity: str) -> str:
    # The definition's hash in the key: a changed SLO is judged by fresh detectors.
    definition = hashlib.blake2b(json.dumps(slo.to_dict(), sort_keys=True).encode(), digest_size=6).hexdigest()
    return json.dumps([slo.name, severity, definition])


class SloBurn:
    """The SLO burn-rate family of detectors (see the module docstring)."""

    name = "slo_burn"
    kind = "slo_burn"
    step = _STEP

    def __init__(self, client: Client, database: str, counter: SloCounter) -> None:
        self.store = SloStore(client, database)
        self.counter = counter
        self._slos: dict[str, SloDefinition] = {}
        self._chunk_start = 0.0

    def buckets(self, start: float, end: float) -> Buckets:
        # Counting first: the minutes read here must be counted, whoever counts on the same clock.
        self.counter.count_until(end)
        self._slos = {slo.name: slo for slo in self.store.all()}
        self._chunk_start = start
        # Every SLO in every minute (no traffic: zero counts), so its detectors exist from the
        # chunk's first minute and are primed with the history before it (`new_detector`).
        minutes = [start + 60.0 * i for i in range(int((end - start) // 60))]
        by_minute: dict[float, dict[str, float | dict[str, float]]] = {t: {} for t in minutes}
        for slo in self._slos.values():
            counted = {t: (good, total) for t, good, total in self.store.minutes(slo, start, end)}
            severities = sorted({rule.severity for rule in policy_of(slo)})
            for t in minutes:
                good, total = counted.get(t, (0, 0))
                for severity in severities:
                    by_minute[t][_series(slo, severity)] = {"good": float(good), "total": float(total)}
        return sorted(by_minute.items())

    def new_detector(self, series: str) -> SeriesDetector:
        name, severity, _ = json.loads(series)
        slo = self._slos[name]
        rules = tuple(rule for rule in policy_of(slo) if rule.severity == severity)
        detector = SloBurnDetector(slo.objective, slo.window_s, rules, severity)
        history_start = self._chunk_start - 60.0 * max(detector.windows)
        detector.prime(self.store.minutes(slo, history_start, self._chunk_start), history_start, self._chunk_start)
        return detector

    def absent_value(self, series: str) -> float | None:
        return None  # a minute without requests burns nothing

    def describe(self, series: str) -> SeriesInfo:
        name, severity, _ = json.loads(series)
        slo = self._slos.get(name)
        service = slo.service if slo else ""
        return SeriesInfo(service=service, operation=name, signal=f"slo_burn_{severity}", unit="x budget")

    def enrich(self, finding: Finding, now: float) -> Finding:
        slo = self._slos.get(finding.operation)
        target = f" ({slo.objective:g}% over {slo.window})" if slo else ""
        return replace(finding, summary=f"SLO {finding.operation}{target} is {finding.summary}")
