"""SLO error budgets and multiwindow, multi-burn-rate alerts (Google SRE Workbook, "Alerting on SLOs").

An SLO is an objective in percent (99.9) over a rolling window (say 30 days) on a
request-based SLI: good requests / total requests. Input is per-minute counts,
``(minute_start, good, total)``, as a `MinuteCounts`.

Definitions, as callers may rely on them:

- A window of length ``w`` ending at ``now`` holds the minutes with
  ``now - w <= minute_start < now``: pass ``now`` = the end of the last complete minute.
  Minutes starting at or after ``now`` are ignored; missing minutes have no traffic.
- ``sli = good / total``, None when ``total == 0``.
- The error budget is ``1 - objective`` (0.001 for 99.9%). Over the SLO window,
  ``allowed_bad = budget * total`` and ``error_budget_remaining = 1 - bad / allowed_bad``:
  1.0 untouched, 0.0 spent, negative overspent; 1.0 when there was no traffic.
- ``burn_rate = (bad / total) / budget`` over a window: 1.0 spends exactly the budget over
  the SLO window; None when the window had no traffic.
- Arithmetic is rational: the objective is read through its shortest decimal form (99.9 is
  999/1000, not the binary float nearest to it), ratios are exact fractions rounded once to a
  float, and thresholds are compared exactly. So a steady 0.1% error ratio against 99.9% burns
  at exactly 1.0.

Alert policy (`WORKBOOK_POLICY`, the Workbook's table for a 30-day SLO):

============  ============  ============  ======================  =========
severity      long window   short window  budget consumed         threshold
============  ============  ============  ======================  =========
page          1h            5m            2%                      14.4
page          6h            30m           5%                      6
ticket        1d            2h            10%                     3
ticket        3d            6h            10%                     1
============  ============  ============  ======================  =========

For an SLO window other than 30 days the windows stay and the thresholds scale so that an
alert still means the same share of budget spent in the long window:
``threshold = budget_fraction * slo_window / long_window`` (28 days: 13.44, 5.6, 2.8, 0.9333).
An alert fires only when the burn rates of BOTH its long and its short window reach (>=) the
threshold, as the Workbook's detection times count (1.44% errors page after exactly 60 minutes).
Evaluation is stateless: the long window makes an alert significant, the short one makes it reset
within minutes of the problem ending, as in the Workbook. A window without
traffic has no burn rate and never fires.

>>> WORKBOOK_POLICY[0].threshold(30 * 86400)
14.4
>>> WORKBOOK_POLICY[1].threshold(28 * 86400)
5.6
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "BURN_WINDOWS",
    "WORKBOOK_POLICY",
    "BurnAlert",
    "BurnRule",
    "MinuteCounts",
    "Severity",
    "SloStatus",
    "budget_burndown",
    "burn_rate",
    "burn_rates",
    "error_budget",
    "error_budget_remaining",
    "evaluate",
    "parse_window",
    "sli",
    "window_counts",
]

Severity = Literal["page", "ticket"]

BURN_WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_WINDOW = re.compile(r"^([1-9][0-9]*)([smhd])$")


def parse_window(label: str) -> int:
    """Seconds in a window label such as ``"5m"``, ``"6h"`` or ``"3d"``.

    >>> parse_window("30m"), parse_window("3d")
    (1800, 259200)
    """
    match = _WINDOW.match(label)
    if match is None:
        raise ValueError(f"window {label!r} is not a count followed by s, m, h or d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True, eq=False)
class MinuteCounts:
    """Good and total requests per minute; sorted by minute start on construction.

    Counts need not be whole numbers (scaled samples are fine) but must be finite, with
    ``0 <= good <= total``. Several rows for one minute simply add up.
    """

    minute_start: npt.NDArray[np.float64]
    good: npt.NDArray[np.float64]
    total: npt.NDArray[np.float64]
    # Prefix sums over the sorted rows, so a window's counts cost two binary searches.
    _good_cum: npt.NDArray[np.float64] = field(init=False, repr=False)
    _total_cum: npt.NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        start = np.asarray(self.minute_start, dtype=np.float64)
        good = np.asarray(self.good, dtype=np.float64)
        total = np.asarray(self.total, dtype=np.float64)
        if start.ndim != 1 or good.shape != start.shape or total.shape != start.shape:
            raise ValueError(
                f"minute_start, good and total must be 1-D of one length: {start.shape}, {good.shape}, {total.shape}"
            )
        for name, array in (("minute_start", start), ("good", good), ("total", total)):
            if not np.all(np.isfinite(array)):
                raise ValueError(f"{name} contains NaN or infinite values")
        if np.any(good < 0) or np.any(good > total):
            raise ValueError("counts must satisfy 0 <= good <= total in every minute")
        order = np.argsort(start, kind="stable")
        start, good, total = start[order], good[order], total[order]
        object.__setattr__(self, "minute_start", start)
        object.__setattr__(self, "good", good)
        object.__setattr__(self, "total", total)
        object.__setattr__(self, "_good_cum", np.concatenate([[0.0], np.cumsum(good)]))
        object.__setattr__(self, "_total_cum", np.concatenate([[0.0], np.cumsum(total)]))

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[float, float, float]]) -> MinuteCounts:
        """From ``(minute_start, good, total)`` rows."""
        array = np.asarray(list(rows), dtype=np.float64).reshape(-1, 3)
        return cls(minute_start=array[:, 0], good=array[:, 1], total=array[:, 2])

    def between(self, start: float, end: float) -> tuple[float, float]:
        """(good, total) over the minutes with ``start <= minute_start < end``."""
        lo = int(np.searchsorted(self.minute_start, start, side="left"))
        hi = int(np.searchsorted(self.minute_start, end, side="left"))
        if hi <= lo:
            return 0.0, 0.0
        return float(self._good_cum[hi] - self._good_cum[lo]), float(self._total_cum[hi] - self._total_cum[lo])


Counts = MinuteCounts | Sequence[tuple[float, float, float]]


@dataclass(frozen=True)
class BurnRule:
    """One line of the alert policy: fire when both windows burn faster than the threshold."""

    severity: Severity
    long_window: str
    short_window: str
    budget_fraction: float  # share of the SLO window's budget the long window spends at threshold

    def __post_init__(self) -> None:
        if self.severity not in ("page", "ticket"):
            raise ValueError(f"severity must be 'page' or 'ticket', got {self.severity!r}")
        if parse_window(self.short_window) >= parse_window(self.long_window):
            raise ValueError(f"short window {self.short_window} must be shorter than long window {self.long_window}")
        if not 0 < self.budget_fraction <= 1:
            raise ValueError(f"budget_fraction must be in (0, 1], got {self.budget_fraction}")

    def threshold(self, slo_window_s: float) -> float:
        """Burn rate at which the long window spends `budget_fraction` of the budget."""
        return float(self.exact_threshold(slo_window_s))

    def exact_threshold(self, slo_window_s: float) -> Fraction:
        """`threshold` as an exact fraction, for comparisons that must not depend on rounding."""
        return _decimal_fraction(self.budget_fraction) * _exact(slo_window_s) / parse_window(self.long_window)


WORKBOOK_POLICY: tuple[BurnRule, ...] = (
    BurnRule("page", "1h", "5m", 0.02),
    BurnRule("page", "6h", "30m", 0.05),
    BurnRule("ticket", "1d", "2h", 0.10),
    BurnRule("ticket", "3d", "6h", 0.10),
)


@dataclass(frozen=True)
class BurnAlert:
    """One rule evaluated at ``now``. Burn rates are None for windows without traffic."""

    severity: Severity
    long_window: str
    short_window: str
    threshold: float
    long_burn: float | None
    short_burn: float | None
    firing: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "long_window": self.long_window,
            "short_window": self.short_window,
            "threshold": self.threshold,
            "long_burn": self.long_burn,
            "short_burn": self.short_burn,
            "firing": self.firing,
        }


@dataclass(frozen=True)
class SloStatus:
    """An SLO at ``now``: compliance and budget over the SLO window, burn rates, alerts."""

    sli_current: float | None  # good / total over the SLO window; None without traffic
    error_budget_remaining: float
    burn_rates: dict[str, float | None]  # BURN_WINDOWS and any other window the policy uses
    alerts: list[BurnAlert]
    good: float = 0.0  # over the SLO window
    total: float = 0.0

    @property
    def firing(self) -> list[BurnAlert]:
        return [alert for alert in self.alerts if alert.firing]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sli_current": self.sli_current,
            "error_budget_remaining": self.error_budget_remaining,
            "burn_rates": dict(self.burn_rates),
            "alerts": [alert.to_dict() for alert in self.alerts],
            "good": self.good,
            "total": self.total,
        }


def error_budget(objective: float) -> float:
    """The allowed error ratio of an objective in percent: ``error_budget(99.9) == 0.001``."""
    return float(_budget(objective))


def sli(good: float, total: float) -> float | None:
    """good / total, or None without traffic.

    >>> sli(999, 1000), sli(0, 0)
    (0.999, None)
    """
    _check_counts(good, total)
    if total == 0:
        return None
    return float(_exact(good) / _exact(total))


def error_budget_remaining(objective: float, good: float, total: float) -> float:
    """``1 - bad / (budget * total)``: 1 untouched, 0 spent, negative overspent; 1 without traffic.

    >>> error_budget_remaining(99.9, 999_750, 1_000_000)
    0.75
    """
    _check_counts(good, total)
    if total == 0:
        return 1.0
    return float(1 - (_exact(total) - _exact(good)) / (_budget(objective) * _exact(total)))


def burn_rate(objective: float, good: float, total: float) -> float | None:
    """``(bad / total) / budget``, or None without traffic.

    >>> burn_rate(99.9, 980, 1000)
    20.0
    """
    exact = _burn(objective, good, total)
    return None if exact is None else float(exact)


def window_counts(counts: Counts, *, now: float, window_s: float) -> tuple[float, float]:
    """(good, total) over the minutes with ``now - window_s <= minute_start < now``."""
    return _as_counts(counts).between(now - window_s, now)


def burn_rates(
    counts: Counts, *, objective: float, now: float, windows: Sequence[str] = BURN_WINDOWS
) -> dict[str, float | None]:
    """Burn rate per window label ending at `now`; None for a window without traffic."""
    minutes = _as_counts(counts)
    _budget(objective)  # validate even when no window has traffic
    result: dict[str, float | None] = {}
    for label in windows:
        good, total = minutes.between(now - parse_window(label), now)
        result[label] = burn_rate(objective, good, total)
    return result


def evaluate(
    counts: Counts,
    *,
    objective: float,
    window_s: float,
    now: float,
    policy: Sequence[BurnRule] = WORKBOOK_POLICY,
) -> SloStatus:
    """The SLO's state at `now`: SLI and budget over the SLO window, burn rates and the policy's alerts."""
    if not window_s > 0:
        raise ValueError(f"window_s must be positive, got {window_s}")
    minutes = _as_counts(counts)
    good, total = minutes.between(now - window_s, now)
    labels = list(BURN_WINDOWS)
    for rule in policy:
        labels += [label for label in (rule.long_window, rule.short_window) if label not in labels]
    exact_burns: dict[str, Fraction | None] = {}
    for label in labels:
        g, t = minutes.between(now - parse_window(label), now)
        exact_burns[label] = _burn(objective, g, t)
    alerts: list[BurnAlert] = []
    for rule in policy:
        threshold = rule.exact_threshold(window_s)
        long_burn, short_burn = exact_burns[rule.long_window], exact_burns[rule.short_window]
        # At or above: the Workbook's detection times (60 min for an error ratio exactly at 14.4x
        # the budget) count a window that burns exactly at the threshold.
        firing = long_burn is not None and short_burn is not None and long_burn >= threshold and short_burn >= threshold
        alerts.append(
            BurnAlert(
                severity=rule.severity,
                long_window=rule.long_window,
                short_window=rule.short_window,
                threshold=float(threshold),
                long_burn=_float(long_burn),
                short_burn=_float(short_burn),
                firing=firing,
            )
        )
    return SloStatus(
        sli_current=sli(good, total),
        error_budget_remaining=error_budget_remaining(objective, good, total),
        burn_rates={label: _float(burn) for label, burn in exact_burns.items()},
        alerts=alerts,
        good=good,
        total=total,
    )


def budget_burndown(
    counts: Counts, *, objective: float, window_s: float, now: float, step_s: float = 3600.0
) -> list[tuple[float, float]]:
    """Remaining error budget through the SLO window ending at `now`, for a burn-down chart.

    Points ``(t, remaining)`` at ``now - window_s``, every `step_s` after it, and at `now`.
    ``remaining(t) = 1 - bad[now - window_s, t) / allowed_bad``, with `allowed_bad` that of the
    whole window (budget * its total requests), so the series starts at 1.0, never rises, and
    ends at `SloStatus.error_budget_remaining`. Without traffic every point is 1.0.
    """
    if not window_s > 0 or not step_s > 0:
        raise ValueError(f"window_s and step_s must be positive, got {window_s} and {step_s}")
    minutes = _as_counts(counts)
    start = now - window_s
    budget = _budget(objective)
    _, total = minutes.between(start, now)
    times = [start + k * step_s for k in range(math.ceil(window_s / step_s))] + [now]
    if total == 0:
        return [(t, 1.0) for t in times]
    allowed = budget * _exact(total)
    points: list[tuple[float, float]] = []
    for t in times:
        good, seen = minutes.between(start, t)
        points.append((t, float(1 - (_exact(seen) - _exact(good)) / allowed)))
    return points


def _as_counts(counts: Counts) -> MinuteCounts:
    return counts if isinstance(counts, MinuteCounts) else MinuteCounts.from_rows(counts)


def _burn(objective: float, good: float, total: float) -> Fraction | None:
    _check_counts(good, total)
    budget = _budget(objective)
    if total == 0:
        return None
    return (_exact(total) - _exact(good)) / (_exact(total) * budget)


def _budget(objective: float) -> Fraction:
    if not 0 < objective < 100:
        raise ValueError(f"objective is a percentage in (0, 100), got {objective}")
    return 1 - _decimal_fraction(objective) / 100


def _decimal_fraction(x: float) -> Fraction:
    # Through the shortest repr, so 99.9 means 999/1000 rather than the binary float's value.
    return Fraction(Decimal(repr(float(x))))


def _exact(x: float) -> Fraction:
    # Counts and times are exact in binary; only user-facing decimals go through repr.
    return Fraction(float(x))


def _float(x: Fraction | None) -> float | None:
    return None if x is None else float(x)


def _check_counts(good: float, total: float) -> None:
    if not (math.isfinite(good) and math.isfinite(total)) or not 0 <= good <= total:
        raise ValueError(f"counts must satisfy 0 <= good <= total, got good={good}, total={total}")
