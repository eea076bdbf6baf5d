"""Per-series detectors of the network family: traffic level, failed handshakes, exporter silence.

Each is a `SeriesDetector` (river protocol, see `base`) that says what is wrong in words an
on-call engineer reads without a legend, with units:

* `TrafficDetector`: bits per second of one customer or interface. A `LevelShiftDetector`
  watching drops and spikes (it learns daily and weekly profiles and has its own cold start),
  re-worded: "Traffic sent by customer acme (in) dropped from 82.1 Mbit/s to 3.2 Mbit/s (-96%)."
  A change must be at least `MIN_TRAFFIC_CHANGE` of the baseline and `MIN_TRAFFIC_CHANGE_BITS`
  to be a finding. After `RESET_AFTER_S` without data (the series' exporter silent for hours)
  the baseline is stale: the model starts cold again and any open finding closes.
* `HandshakeDetector`: TCP flows with SYN but no ACK out of all TCP flows, ``{"y": failed,
  "n": tcp_flows}``, judged on counts as `ErrorRateDetector` judges errors (Bernoulli CUSUM, so
  a quiet minute weighs as little as it should), rises only. No finding before 60 minutes and
  1000 TCP flows have set the baseline; the rise must reach 3x the baseline share and 5 points;
  a finding needs at least `MIN_FAILED_HANDSHAKES` failed handshakes since its onset, and
  closes when the evidence has drained back to zero.
* `ExporterSilenceDetector`: flows per minute of one exporter; see its docstring.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from dataclasses import replace

from vigil.detectors.base import Anomaly, Observation, Severity
from vigil.detectors.level_shift import LevelShiftDetector

__all__ = [
    "MIN_FAILED_HANDSHAKES",
    "MIN_TRAFFIC_CHANGE",
    "MIN_TRAFFIC_CHANGE_BITS",
    "RESET_AFTER_S",
    "ExporterSilenceDetector",
    "HandshakeDetector",
    "TrafficDetector",
    "format_bits",
]

# Traffic moves by tens of percent over a day; a smaller step is rarely worth waking anyone for.
MIN_TRAFFIC_CHANGE = 0.3
# Below this the series is a trickle (a few flows a minute): its steps are noise, not incidents.
MIN_TRAFFIC_CHANGE_BITS = 10_000.0
# Hours without data make a baseline meaningless (and a retired exporter's customers learn anew).
RESET_AFTER_S = 6 * 3600.0
# Values a traffic detector keeps to date an onset: a CUSUM run rarely starts further back.
_RECENT_BUCKETS = 720
# A "surge" of a handful of SYNs is a port scan's background, not a failing service.
MIN_FAILED_HANDSHAKES = 20


def format_bits(bits_per_second: float) -> str:
    """A rate as people say it.

    >>> format_bits(82_100_000), format_bits(3_200_000), format_bits(950.0), format_bits(1.5e9)
    ('82.1 Mbit/s', '3.2 Mbit/s', '950 bit/s', '1.5 Gbit/s')
    """
    value = abs(bits_per_second)
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{bits_per_second / scale:.3g} {prefix}bit/s"
    return f"{bits_per_second:.3g} bit/s"


def _hhmm(t: float) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(t))


def _hhmmss(t: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(t))


def _traffic_level() -> LevelShiftDetector:
    return LevelShiftDetector(
        direction="both",
        min_effect_rel=MIN_TRAFFIC_CHANGE,
        min_effect_abs=MIN_TRAFFIC_CHANGE_BITS,
    )


class TrafficDetector:
    """Drops and spikes of one traffic series (bits/s); see the module docstring.

    `subject` completes "Traffic ...", e.g. "sent by customer acme (in)".

    The onset is the level-shift detector's, moved forward to the first bucket that went at least
    halfway from the baseline to the excursion's level: its CUSUM run may have started on a few
    noisy buckets before a link went down, and "since when" should name the minute it went down.
    It is fixed when the finding opens, so the finding keeps one onset.
    """

    def __init__(self, subject: str, *, reset_after: float = RESET_AFTER_S) -> None:
        self.subject = subject
        self.reset_after = reset_after
        self.level = _traffic_level()
        self._last_data: float | None = None
        self._recent: deque[tuple[float, float]] = deque(maxlen=_RECENT_BUCKETS)
        self._onsets: tuple[float, float] | None = None  # (level-shift onset, refined onset)
        self._anomaly: Anomaly | None = None

    def score_one(self, x: Observation) -> float:
        return float(self.level.score_one(x))

    def learn_one(self, x: Observation) -> None:
        t = float(x["t"])
        if "y" in x:
            self._last_data = t
            self._recent.append((t, float(x["y"])))
        elif self._last_data is not None and t - self._last_data >= self.reset_after:
            self.level = _traffic_level()
            self._last_data = None
        self.level.learn_one(x)
        self._anomaly = self._describe(self.level.anomaly())

    def anomaly(self) -> Anomaly | None:
        return self._anomaly

    def _onset(self, found: Anomaly) -> float:
        if self._onsets is not None and self._onsets[0] == found.onset:
            return self._onsets[1]
        halfway = 0.5 * abs(found.observed - found.baseline)
        sign = 1.0 if found.observed > found.baseline else -1.0
        onset = next(
            (t for t, y in self._recent if t >= found.onset and (y - found.baseline) * sign >= halfway),
            found.onset,
        )
        self._onsets = (found.onset, onset)
        return onset

    def _describe(self, found: Anomaly | None) -> Anomaly | None:
        if found is None:
            self._onsets = None
            return None
        baseline, observed = found.baseline, found.observed
        word = "dropped" if observed < baseline else "rose"
        change = f" ({(observed - baseline) / baseline:+.0%})" if baseline > 0 else ""
        # Critical is a link-sized event: a tenth of the traffic or less left, or three times as much.
        severity: Severity = "critical" if observed <= 0.1 * baseline or observed >= 3 * baseline else "warning"
        summary = f"Traffic {self.subject} {word} from {format_bits(baseline)} to {format_bits(observed)}{change}."
        return replace(found, onset=self._onset(found), severity=severity, summary=summary)


class HandshakeDetector:
    """Surges of failed TCP handshakes (SYN without ACK) of one customer; see the module docstring.

    `subject` completes "Failed TCP handshakes ...", e.g. "to customer globex (out)".

    The test is `ErrorRateDetector`'s (Page's CUSUM for Bernoulli trials: is the share now p1
    rather than the baseline p0?), with one difference: the warm-up only learns the baseline.
    Failed handshakes often have a high everyday share (scanners, backscatter: 30% is common on
    traffic from the internet), and evidence gathered against a still-empty baseline would make
    that everyday share a finding that never closes.
    """

    def __init__(
        self,
        subject: str,
        *,
        h: float = 10.0,
        min_increase: float = 0.05,
        min_ratio: float = 3.0,
        warmup_flows: int = 1000,
        warmup_buckets: int = 60,
        half_life_buckets: float = 1440.0,
        min_failed: int = MIN_FAILED_HANDSHAKES,
    ) -> None:
        self.subject = subject
        self.h = h
        self.min_increase = min_increase
        self.min_ratio = min_ratio
        self.warmup_flows = warmup_flows
        self.warmup_buckets = warmup_buckets
        self.decay = 0.5 ** (1.0 / half_life_buckets)
        self.min_failed = min_failed
        self.failed = 0.0  # decayed baseline counts
        self.flows = 0.0
        self.buckets = 0
        self.total_flows = 0.0
        self.s = 0.0  # CUSUM statistic
        self.s_zero_at: float | None = None  # bucket in which S last left zero
        self.onset: float | None = None
        self.since_failed = 0.0  # counts since S left zero, for `observed`
        self.since_flows = 0.0

    @property
    def warm(self) -> bool:
        return self.buckets >= self.warmup_buckets and self.total_flows >= self.warmup_flows

    @property
    def p0(self) -> float:
        # A prior of one failure in 200 flows keeps a spotless customer from having p0 = 0.
        return (self.failed + 1.0) / (self.flows + 200.0)

    @property
    def p1(self) -> float:
        return min(max(self.p0 * self.min_ratio, self.p0 + self.min_increase), 0.999)

    def _increment(self, failed: float, flows: float) -> float:
        p0, p1 = self.p0, self.p1
        return failed * math.log(p1 / p0) + (flows - failed) * math.log((1 - p1) / (1 - p0))

    def score_one(self, x: Observation) -> float:
        if "y" not in x or not self.warm:
            return 0.0
        return min(max(0.0, self.s + self._increment(x["y"], x.get("n", 0.0))) / self.h, 1.0)

    def learn_one(self, x: Observation) -> None:
        if "y" not in x or x.get("n", 0.0) <= 0:
            return
        failed, flows = x["y"], x["n"]
        if self.warm:
            before = self.s
            # Capped, so that a long surge drains within minutes once it is over.
            self.s = min(max(0.0, self.s + self._increment(failed, flows)), 3 * self.h)
            if before == 0.0 and self.s > 0.0:
                self.s_zero_at = x["t"]
                self.since_failed = self.since_flows = 0.0
            if self.s > 0.0:
                self.since_failed += failed
                self.since_flows += flows
            if self.onset is None and self.s >= self.h:
                self.onset = self.s_zero_at
            elif self.onset is not None and self.s == 0.0:
                self.onset = None
        if self.onset is None and self.s < self.h / 2:
            self.failed = self.failed * self.decay + failed
            self.flows = self.flows * self.decay + flows
        self.buckets += 1
        self.total_flows += flows

    def anomaly(self) -> Anomaly | None:
        if self.onset is None or self.since_failed < self.min_failed:
            return None
        observed = self.since_failed / max(self.since_flows, 1.0)
        baseline = self.p0
        severity: Severity = "critical" if observed >= max(10 * baseline, 0.1) else "warning"
        return Anomaly(
            onset=self.onset,
            baseline=baseline,
            observed=observed,
            score=min(self.s / self.h, 1.0),
            severity=severity,
            summary=(
                f"Failed TCP handshakes (SYN without ACK) {self.subject} rose to {observed:.1%} "
                f"of {int(self.since_flows):,} TCP flows, from a baseline of {baseline:.1%}."
            ),
        )


class ExporterSilenceDetector:
    """An exporter that had been sending flows and stops.

    Fed every minute with ``{"y": flows}`` when the exporter's flows reached the store in that
    minute (no ``"y"`` otherwise), and ``"seen"``: the time of its last packet, when the family
    knows it (from the receiver's exporter status).

    * Cold start: nothing before `min_active` minutes with flows; an exporter never seen sending
      never fires.
    * It opens after N minutes in a row without flows. N is the largest of `min_silent`,
      `cadence_factor` x the exporter's median gap between minutes with flows, twice its longest
      recent gap, and the run of empty minutes that an exporter missing a share p of the minutes
      at random reaches with probability `chance` (ln(chance) / ln(p)), p taken at the high end
      of what its recent minutes allow (Agresti-Coull, 2 sigma), so a short history errs on the
      quiet side. An exporter that sent flows in each of the last two hours' minutes is silent
      after 3 empty minutes; one with flows in half of the minutes, at random, after about 16.
      The onset is the first empty minute.
    * It closes in the first minute with flows again, or after `retire_after` seconds of silence:
      by then the exporter is taken to be retired, and it opens no new finding until it has sent
      flows again.

    Gaps that were findings are not learnt as the exporter's cadence.
    """

    def __init__(
        self,
        exporter: str,
        *,
        min_active: int = 30,
        min_silent: int = 3,
        cadence_factor: float = 3.0,
        chance: float = 1e-4,
        gaps_kept: int = 120,
        retire_after: float = 86400.0,
    ) -> None:
        self.exporter = exporter
        self.min_active = min_active
        self.min_silent = min_silent
        self.cadence_factor = cadence_factor
        self.chance = chance
        self.retire_after = retire_after
        self._step: float | None = None
        self._last_t: float | None = None
        self._active = 0  # minutes with flows
        self._last_flow: float | None = None  # start of the last minute with flows
        self._last_packet: float | None = None
        self._gaps: deque[int] = deque(maxlen=gaps_kept)  # minutes between minutes with flows
        self._onset: float | None = None
        self._anomaly: Anomaly | None = None

    def _needed(self) -> int:
        if not self._gaps:
            return self.min_silent
        median = statistics.median(self._gaps)
        minutes = sum(self._gaps)
        empty = (minutes - len(self._gaps) + 2) / (minutes + 4)
        empty_high = min(empty + 2 * math.sqrt(empty * (1 - empty) / (minutes + 4)), 0.999)
        by_chance = math.ceil(math.log(self.chance) / math.log(empty_high))
        return max(self.min_silent, math.ceil(self.cadence_factor * median), 2 * max(self._gaps), by_chance)

    def _empty(self, t: float) -> int:
        """Minutes since the last minute with flows (1 in the first empty minute)."""
        assert self._last_flow is not None and self._step is not None
        return round((t - self._last_flow) / self._step)

    def score_one(self, x: Observation) -> float:
        if "y" in x and x["y"] > 0:
            return 0.0
        if self._active < self.min_active or self._last_flow is None or self._step is None:
            return 0.0
        return min(1.0, self._empty(float(x["t"])) / (2.0 * self._needed()))

    def learn_one(self, x: Observation) -> None:
        t = float(x["t"])
        if self._last_t is not None and t > self._last_t:
            gap = t - self._last_t
            self._step = gap if self._step is None else min(self._step, gap)
        self._last_t = t
        seen = x.get("seen")
        if seen is not None:
            self._last_packet = max(self._last_packet or 0.0, float(seen))
        if x.get("y", 0.0) > 0:
            if self._last_flow is not None and self._step is not None and self._onset is None:
                self._gaps.append(self._empty(t))
            self._last_flow = t
            self._active += 1
            self._onset = None
            self._anomaly = None
            return
        if self._active < self.min_active or self._last_flow is None or self._step is None:
            return
        empty = self._empty(t)
        needed = self._needed()
        if self._onset is None and empty >= needed:  # stays set while retired: no second finding
            self._onset = self._last_flow + self._step
        if self._onset is not None:
            retired = t + self._step - self._onset >= self.retire_after
            self._anomaly = None if retired else self._describe(t, empty, needed)

    def anomaly(self) -> Anomaly | None:
        return self._anomaly

    def _describe(self, t: float, empty: int, needed: int) -> Anomaly:
        assert self._onset is not None and self._last_flow is not None and self._step is not None
        step = self._step
        cadence = statistics.median(self._gaps) if self._gaps else 1
        usual = "every minute" if cadence <= 1 else f"every {cadence:g} minutes"
        packet = self._last_packet
        last = f"last flows in the minute from {_hhmm(self._last_flow)}"
        if packet is not None and self._last_flow <= packet < self._last_flow + step:
            last = f"last flow {_hhmmss(packet)}"
        elif packet is not None and packet >= self._last_flow + step:
            # Packets without flow records: templates only, or records the decoder cannot read.
            last = f"{last}; packets still arrive, last at {_hhmmss(packet)}"
        return Anomaly(
            onset=self._onset,
            baseline=cadence * step,
            observed=t + step - self._onset,
            score=min(1.0, empty / (2.0 * needed)),
            severity="warning",
            summary=(
                f"Exporter {self.exporter} silent since {_hhmm(self._onset)} ({last}); it usually sends flows {usual}."
            ),
        )
