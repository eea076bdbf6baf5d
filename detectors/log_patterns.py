"""Log pattern anomalies: new warning patterns, pattern rates spiking or vanishing, error bursts.

Series come from the per-minute log pattern rollup (`log_patterns_1m`: lines per service and
template, see `vigil.collector.log_templates`):

- ``["new", service, template_id]`` for every template logged at WARN or above: a
  `NewPatternDetector`. A template is *new* in the minute it was first counted in all retained
  logs; templates of a service that has logged for less than `NEW_PATTERN_COLD_START_S` are not
  new, they are the service's start (a fresh Vigil would otherwise flag every warning it hears).
- ``["rate", service, template_id]`` for every template: a `TemplateRateDetector` (spike or
  vanish of the template's lines per minute; 0 in a minute without it).
- ``["errors", service]``: an `ErrorRateDetector` on the service's ERROR/FATAL lines out of all
  its lines, per minute: an error burst.

Finding rules (kind ``log_pattern``; signal ``new_pattern``, ``pattern_rate`` or ``error_logs``):
cold start as each detector states; one finding per excursion; `operation` is the template
text (or empty for error bursts). Evidence when a finding opens: up to five trace ids of log
lines of the pattern (of ERROR lines, for a burst) since the onset, and the deploy nearest before
the onset, as for service regressions.
"""

from __future__ import annotations

import json
from dataclasses import replace

from clickhouse_connect.driver.client import Client

from vigil.detectors.base import SeriesDetector
from vigil.detectors.error_rate import ErrorRateDetector
from vigil.detectors.log_rate import NewPatternDetector, TemplateRateDetector
from vigil.detectors.runner import Buckets, SeriesInfo
from vigil.detectors.service_regressions import nearest_deploy
from vigil.store.findings import Finding
from vigil.store.log_patterns_read import pattern_buckets, pattern_trace_ids

__all__ = ["NEW_PATTERN_COLD_START_S", "LogPatterns"]

NEW_PATTERN_COLD_START_S = 3600.0
_WARN = 13
# Templates are long; a finding names the start, the full text is one click away.
_MAX_OPERATION_CHARS = 300

_SIGNALS = {"new": "new_pattern", "rate": "pattern_rate", "errors": "error_logs"}
_UNITS = {"new": "lines", "rate": "lines/min", "errors": "ratio"}


def _key(*parts: str | int) -> str:
    return json.dumps(parts, separators=(",", ":"))


class LogPatterns:
    """The log pattern family of detectors (see the module docstring)."""

    name = "log_patterns"
    kind = "log_pattern"
    step = 60.0

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database
        # Template text by (service, template id), for naming findings; filled as buckets are read.
        self._templates: dict[tuple[str, int], str] = {}

    def buckets(self, start: float, end: float) -> Buckets:
        by_minute: dict[float, dict[str, float | dict[str, float]]] = {}
        errors: dict[tuple[float, str], list[int]] = {}
        for b in pattern_buckets(self.client, self.database, start, end):
            values = by_minute.setdefault(b.minute, {})
            self._templates[(b.service, b.template_id)] = b.template
            values[_key("rate", b.service, b.template_id)] = float(b.lines)
            if b.severity_max >= _WARN:
                new = b.minute == b.first_minute and b.first_minute - b.service_first_minute >= NEW_PATTERN_COLD_START_S
                values[_key("new", b.service, b.template_id)] = {
                    "y": float(b.lines),
                    "new": 1.0 if new else 0.0,
                    "severity": float(b.severity_max),
                }
            counts = errors.setdefault((b.minute, b.service), [0, 0])
            counts[0] += b.errors
            counts[1] += b.lines
        for (minute, service), (error_lines, lines) in errors.items():
            by_minute[minute][_key("errors", service)] = {"y": float(error_lines), "n": float(lines)}
        return sorted(by_minute.items())

    def new_detector(self, series: str) -> SeriesDetector:
        which = json.loads(series)[0]
        if which == "new":
            return NewPatternDetector()
        if which == "rate":
            return TemplateRateDetector()
        return ErrorRateDetector(noun="log lines")

    def absent_value(self, series: str) -> float | None:
        # A minute without a template is 0 lines of it; a minute without any log of a service says
        # nothing about its error share.
        return None if json.loads(series)[0] == "errors" else 0.0

    def describe(self, series: str) -> SeriesInfo:
        which, service, *rest = json.loads(series)
        operation = ""
        if rest:
            operation = self._templates.get((service, int(rest[0])), f"template {rest[0]}")[:_MAX_OPERATION_CHARS]
        return SeriesInfo(service=service, operation=operation, signal=_SIGNALS[which], unit=_UNITS[which])

    def enrich(self, finding: Finding, now: float) -> Finding:
        which, service, *rest = json.loads(finding.series)
        template_id = int(rest[0]) if rest else None
        traces = pattern_trace_ids(
            self.client, self.database, service=service, template_id=template_id, start=finding.started_at, end=now
        )
        deploy_id, note = nearest_deploy(self.client, self.database, service, finding.started_at)
        if which == "errors":
            head = f"Error log burst in {service}:"
        elif which == "new":
            head = f"New log pattern in {service} «{finding.operation}»:"
        else:
            head = f"Log pattern of {service} «{finding.operation}»:"
        summary = f"{head} {finding.summary}" + (f" {note}" if note else "")
        return replace(finding, exemplar_trace_ids=tuple(traces), deploy_id=deploy_id, summary=summary)
