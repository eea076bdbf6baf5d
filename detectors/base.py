"""What every streaming detector is: river's protocol plus a statement of what is wrong.

A detector watches one series. The runner feeds it one observation per closed bucket,
oldest first, as river's anomaly detectors are fed: `score_one(x)` before `learn_one(x)`,
so a point is judged by a model that has not yet seen it. `x` is ``{"t": unix seconds of
the bucket start, "y": value}``; a bucket with no data has no ``"y"`` key, which lets a
detector tell a quiet series from a stopped one.

After each point the runner asks `anomaly()`: None while the series looks normal (or while
the detector has no baseline yet: cold start), else an `Anomaly` saying since when, how far
from baseline and how bad. The runner turns a run of anomalies into one finding, opened at
the anomaly's onset and closed when `anomaly()` returns None again.

Detectors are plain Python objects; the runner saves their state with pickle, so they hold
no open resources and no lambdas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["Anomaly", "Observation", "SeriesDetector", "Severity"]

Observation = dict[str, float]

Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True, slots=True)
class Anomaly:
    """The current excursion of one series from its baseline."""

    onset: float  # unix seconds: the first bucket of the excursion, as the detector estimates it
    baseline: float  # the value the series normally has
    observed: float  # the value the excursion has (e.g. the median since onset)
    score: float  # 0..1, how sure the detector is
    severity: Severity
    summary: str  # one sentence a person can act on, without units the caller must guess


class SeriesDetector(Protocol):
    """A detector of one series, in river's anomaly-detector protocol."""

    def score_one(self, x: Observation) -> float:
        """How anomalous `x` is, in 0..1, before learning it."""
        ...

    def learn_one(self, x: Observation) -> None:
        """Take `x` into the model."""
        ...

    def anomaly(self) -> Anomaly | None:
        """The excursion in progress after the last `learn_one`, or None."""
        ...
