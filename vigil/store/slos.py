"""Service level objectives: their definitions, and good/total request counts per minute.

An SLO is defined in the SLO file (``VIGIL_SLO_FILE``, YAML) or with ``PUT /api/v1/slos/{name}``;
both land in `slos`. Its requests are the service's entry spans (server or consumer spans, or
root spans), optionally of one operation, and a request is *good* when:

- ``availability`` by ``status`` (default): its span status is not Error;
- ``availability`` by ``http_status``: its HTTP status (``http.response.status_code`` or
  ``http.status_code``) is below 500; a span without one is judged by its status;
- ``latency``: it took at most ``threshold_ms``.

Per-minute counts go to `slo_minutes`, kept for the longest SLO window (spans may be kept for
less: the counts outlive them). A minute is rewritten whole when recounted (ReplacingMergeTree),
so counting a minute twice never doubles it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml  # type: ignore[import-untyped]
from clickhouse_connect.driver.client import Client

from vigil.config_file import read_yaml
from vigil.errors import ConfigError, StoreUnavailable

__all__ = ["MAX_WINDOW_S", "BurnAlertRule", "SloDefinition", "SloStore", "load_slo_file", "parse_slo"]

MAX_WINDOW_S = 90 * 86400
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_DURATION = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400}
_KINDS = ("availability", "latency")
_AVAILABILITY_BY = ("status", "http_status")
_SEVERITIES = ("page", "ticket")
_ENTRY = "(SpanKind IN ('Server', 'Consumer') OR ParentSpanId = '')"


@dataclass(frozen=True, slots=True)
class BurnAlertRule:
    """One multiwindow burn-rate alert: fires when both windows burn at least `budget_fraction`
    of the budget over the long window (scaled to the SLO window)."""

    severity: str
    long_window: str
    short_window: str
    budget_fraction: float


@dataclass(frozen=True, slots=True)
class SloDefinition:
    name: str
    service: str
    objective: float  # percent, e.g. 99.9
    window: str  # e.g. 30d
    kind: str = "availability"
    operation: str = ""
    availability_by: str = "status"
    threshold_ms: float | None = None
    description: str = ""
    # Empty: the SRE Workbook's policy (pages at 14.4x and 6x, tickets at 3x and 1x for 30 days).
    alerts: tuple[BurnAlertRule, ...] = field(default_factory=tuple)

    @property
    def window_s(self) -> int:
        return duration_s(self.window)

    @property
    def counting_key(self) -> str:
        """What the minute counts depend on: change it and the counts are recounted."""
        what = [self.service, self.operation, self.kind, self.availability_by, self.threshold_ms]
        return hashlib.blake2b(json.dumps(what).encode(), digest_size=6).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["alerts"] = [asdict(rule) for rule in self.alerts]
        return data


def duration_s(text: str) -> int:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 5m, 1h or 30d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_slo(name: str, spec: Mapping[str, Any]) -> SloDefinition:
    """An SLO from its fields (a YAML mapping or a JSON body), or ValueError naming the field."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"SLO {name!r}: expected a mapping of fields, got {type(spec).__name__}")
    known = {"service", "objective", "window", "kind", "operation", "availability_by", "threshold_ms"}
    known |= {"description", "alerts", "name"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"SLO {name!r}: unknown field {unknown[0]!r}; expected some of {sorted(known)}")
    if not _NAME.match(name):
        raise ValueError(f"SLO name {name!r}: use letters, digits, '.', '_' and '-' (up to 100)")

    def text(key: str, default: str | None = None) -> str:
        value = spec.get(key, default)
        if not isinstance(value, str) or (default is None and not value.strip()):
            raise ValueError(f"SLO {name!r}: {key} must be a non-empty string")
        return value.strip()

    kind = text("kind", "availability")
    if kind not in _KINDS:
        raise ValueError(f"SLO {name!r}: kind must be one of {list(_KINDS)}, got {kind!r}")
    availability_by = text("availability_by", "status")
    if availability_by not in _AVAILABILITY_BY:
        raise ValueError(f"SLO {name!r}: availability_by must be one of {list(_AVAILABILITY_BY)}")
    objective = spec.get("objective")
    if isinstance(objective, bool) or not isinstance(objective, int | float) or not 0 < objective < 100:
        raise ValueError(f"SLO {name!r}: objective must be a percentage between 0 and 100 (e.g. 99.9)")
    window = text("window", "30d")
    try:
        window_s = duration_s(window)
    except ValueError as exc:
        raise ValueError(f"SLO {name!r}: window: {exc}") from None
    if not 86400 <= window_s <= MAX_WINDOW_S:
        raise ValueError(f"SLO {name!r}: window must be between 1d and 90d, got {window!r}")
    threshold = spec.get("threshold_ms")
    if kind == "latency":
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold <= 0:
            raise ValueError(f"SLO {name!r}: a latency SLO needs threshold_ms, a positive number of milliseconds")
        threshold = float(threshold)
    elif threshold is not None:
        raise ValueError(f"SLO {name!r}: threshold_ms is for latency SLOs only")
    return SloDefinition(
        name=name,
        service=text("service"),
        objective=float(objective),
        window=window,
        kind=kind,
        operation=text("operation", ""),
        availability_by=availability_by,
        threshold_ms=threshold,
        description=text("description", ""),
        alerts=_alert_rules(name, spec.get("alerts")),
    )


def _alert_rules(name: str, raw: Any) -> tuple[BurnAlertRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"SLO {name!r}: alerts must be a non-empty list of rules")
    rules = []
    for i, item in enumerate(raw):
        where = f"SLO {name!r}: alerts[{i}]"
        if not isinstance(item, Mapping) or set(item) != {"severity", "long_window", "short_window", "budget_fraction"}:
            raise ValueError(f"{where} needs exactly severity, long_window, short_window and budget_fraction")
        if item["severity"] not in _SEVERITIES:
            raise ValueError(f"{where}: severity must be page or ticket")
        long_s, short_s = (duration_s(str(item[key])) for key in ("long_window", "short_window"))
        if short_s >= long_s:
            raise ValueError(f"{where}: short_window must be shorter than long_window")
        fraction = item["budget_fraction"]
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
            raise ValueError(f"{where}: budget_fraction must be in (0, 1], e.g. 0.02 for 2% of the budget")
        rules.append(
            BurnAlertRule(item["severity"], str(item["long_window"]), str(item["short_window"]), float(fraction))
        )
    return tuple(rules)


def _definition(data: Mapping[str, Any]) -> SloDefinition:
    return SloDefinition(**{**data, "alerts": tuple(BurnAlertRule(**rule) for rule in data.get("alerts", []))})


def _good_condition(slo: SloDefinition) -> str:
    if slo.kind == "latency":
        return "Duration <= {threshold_ns:UInt64}"
    if slo.availability_by == "http_status":
        code = "if(SpanAttributes['http.response.status_code'] != '', SpanAttributes['http.response.status_code'], SpanAttributes['http.status_code'])"  # noqa: E501
        return f"if({code} != '', toUInt16OrZero({code}) < 500, StatusCode != 'Error')"
    return "StatusCode != 'Error'"


class SloStore:
    """SLO definitions and their per-minute counts."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database

    def put(self, slo: SloDefinition, *, source: str) -> None:
        self._insert_definition(slo.name, json.dumps(slo.to_dict()), source, deleted=0)

    def delete(self, name: str) -> None:
        self._insert_definition(name, "{}", "api", deleted=1)

    def _insert_definition(self, name: str, definition: str, source: str, *, deleted: int) -> None:
        row = [name, definition, source, deleted, datetime.fromtimestamp(time.time(), UTC)]
        try:
            self.client.insert(
                f"{self.database}.slos", [row], column_names=["Name", "Definition", "Source", "Deleted", "UpdatedAt"]
            )
        except Exception as exc:
            raise StoreUnavailable(f"ClickHouse did not accept SLO {name!r}: {exc}") from exc

    def sync_file(self, slos: list[SloDefinition]) -> None:
        """Make the file's SLOs current: put each, and delete file SLOs no longer in it."""
        rows = self.client.query(
            f"SELECT Name FROM {self.database}.slos FINAL WHERE Deleted = 0 AND Source = 'file'"
        ).result_rows
        names = {slo.name for slo in slos}
        current = {slo.name: slo for slo in self.all()}
        for slo in slos:
            if current.get(slo.name) != slo:
                self.put(slo, source="file")
        for (name,) in rows:
            if name not in names:
                self.delete(name)

    def all(self) -> list[SloDefinition]:
        rows = self.client.query(
            f"SELECT Definition FROM {self.database}.slos FINAL WHERE Deleted = 0 ORDER BY Name"
        ).result_rows
        return [_definition(json.loads(row[0])) for row in rows]

    def get(self, name: str) -> SloDefinition | None:
        return next((slo for slo in self.all() if slo.name == name), None)

    def count_minutes(self, slo: SloDefinition, start: float, end: float) -> int:
        """Count good and total requests of each minute in [start, end) from spans into `slo_minutes`."""
        operation = "AND SpanName = {operation:String}" if slo.operation else ""
        self.client.command(
            f"""INSERT INTO {self.database}.slo_minutes (SloName, CountingKey, Minute, Good, Total, UpdatedAt)
                SELECT {{name:String}}, {{key:String}}, toStartOfMinute(Timestamp) AS minute,
                       countIf({_good_condition(slo)}), count(), now64(3)
                FROM {self.database}.spans
                WHERE ServiceName = {{service:String}} {operation} AND {_ENTRY}
                  AND Timestamp >= toDateTime({{start:Float64}}) AND Timestamp < toDateTime({{end:Float64}})
                GROUP BY minute""",
            parameters={
                "name": slo.name,
                "key": slo.counting_key,
                "service": slo.service,
                "operation": slo.operation,
                "threshold_ns": int((slo.threshold_ms or 0) * 1e6),
                "start": start,
                "end": end,
            },
        )
        return int((end - start) // 60)

    def minutes(self, slo: SloDefinition, start: float, end: float) -> list[tuple[float, int, int]]:
        """(minute start, good, total) of the minutes with traffic in [start, end), oldest first."""
        rows = self.client.query(
            f"""SELECT toUnixTimestamp(Minute), Good, Total FROM {self.database}.slo_minutes FINAL
                WHERE SloName = {{name:String}} AND CountingKey = {{key:String}}
                  AND Minute >= toDateTime({{start:Float64}}) AND Minute < toDateTime({{end:Float64}})
                ORDER BY Minute""",
            parameters={"name": slo.name, "key": slo.counting_key, "start": start, "end": end},
        ).result_rows
        return [(float(minute), int(good), int(total)) for minute, good, total in rows]


def load_slo_file(path: str) -> list[SloDefinition]:
    """The SLOs of a YAML file (``slos:`` mapping names to fields), or ConfigError naming file, line and reason."""
    root, data = read_yaml(path, "VIGIL_SLO_FILE")
    if data is None:
        return []
    if not isinstance(data, dict) or set(data) != {"slos"} or not isinstance(data["slos"], dict):
        raise ConfigError(f"{path}:1: expected a top-level 'slos:' mapping SLO names to their fields")
    lines = {}
    assert isinstance(root, yaml.MappingNode)
    for key, value in root.value:
        if key.value == "slos" and isinstance(value, yaml.MappingNode):
            lines = {name.value: name.start_mark.line + 1 for name, _ in value.value}
    slos = []
    for name, spec in data["slos"].items():
        try:
            slos.append(parse_slo(str(name), spec))
        except ValueError as exc:
            raise ConfigError(f"{path}:{lines.get(str(name), 1)}: {exc}") from None
    return slos
