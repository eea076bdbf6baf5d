"""Alert rules: which findings notify whom, after how long, and how often again.

A rule matches findings by `kinds`, `services`, minimum `severity` and `labels` (exact values of
a finding's `operation` and `signal`); an empty matcher matches everything. A finding open for
the rule's `for` duration fires an alert with the rule's `severity` (default: the finding's),
routed to the rule's `channels` (default: ``VIGIL_SLACK_CHANNEL``); a firing alert is repeated
in its thread every `repeat` (0: never) and resolves when the finding closes. Every matching
rule makes its own alert.

A rule with a `monitor` watches a metric query instead (`vigil.store.monitors`): a breach of its
condition is a ``monitor`` finding named after the rule, and that rule alone alerts on it.

Rules come from a YAML file (``VIGIL_ALERT_RULES_FILE``: ``rules:`` a list of rules) or
``PUT /api/v1/alert-rules``. With neither, `DEFAULT_RULES` send every finding of severity warning
or above to the default channel, so alerts work once Slack is configured.

```yaml
rules:
  - name: checkout-latency
    kinds: [service_regression]
    services: [checkout]
    severity: warning          # at least this severe
    labels: {signal: latency_p95}
    for: 2m
    channels: ["#checkout-oncall"]
    repeat: 4h
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml  # type: ignore[import-untyped]

from vigil.config_file import read_yaml
from vigil.errors import ConfigError
from vigil.store.monitors import MonitorSpec, parse_monitor

__all__ = ["DEFAULT_RULES", "SEVERITY_RANK", "AlertRule", "load_rules_file", "matching", "parse_rules"]

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
_KINDS = ("service_regression", "replication_lag", "log_pattern", "network", "slo_burn", "monitor", "self_monitoring")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LABELS = ("operation", "signal")
_FIELDS = {"name", "kinds", "services", "severity", "labels", "for", "channels", "repeat", "notify_severity", "monitor"}


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    kinds: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    severity: str = "warning"  # the least severe finding that matches
    labels: tuple[tuple[str, str], ...] = ()
    for_s: float = 0.0
    channels: tuple[str, ...] = ()  # empty: the default channel
    repeat_s: float = 0.0
    notify_severity: str = ""  # the alert's severity; empty: the finding's
    # A monitor rule watches a metric query; it alerts on its own `monitor` findings only.
    monitor: MonitorSpec | None = None

    def matches(self, *, kind: str, service: str, severity: str, operation: str, signal: str) -> bool:
        if self.monitor is not None:
            return kind == "monitor" and operation == self.name
        if kind == "monitor":
            return False  # another rule's monitor: that rule routes it
        if self.kinds and kind not in self.kinds:
            return False
        if self.services and service not in self.services:
            return False
        if SEVERITY_RANK.get(severity, 0) < SEVERITY_RANK[self.severity]:
            return False
        values = {"operation": operation, "signal": signal}
        return all(values[key] == value for key, value in self.labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kinds": list(self.kinds),
            "services": list(self.services),
            "severity": self.severity,
            "labels": dict(self.labels),
            "for": _duration_text(self.for_s),
            "channels": list(self.channels),
            "repeat": _duration_text(self.repeat_s),
            "notify_severity": self.notify_severity,
            **({"monitor": self.monitor.to_dict()} if self.monitor is not None else {}),
        }


DEFAULT_RULES: tuple[AlertRule, ...] = (AlertRule(name="default", severity="warning"),)


def _duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _duration(where: str, value: Any) -> float:
    match = _DURATION.match(str(value))
    if match is None:
        raise ValueError(f"{where}: {value!r} is not a duration such as 0s, 2m or 4h")
    return float(int(match.group(1)) * _UNIT_S[match.group(2)])


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}: expected a list of names")
    return tuple(value)


def _rule(index: int, spec: Any) -> AlertRule:
    where = f"rule {index + 1}"
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a mapping of fields")
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{where}: name is required: letters, digits, '.', '_' and '-'")
    where = f"rule {name!r}"
    unknown = sorted(set(spec) - _FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}; expected some of {sorted(_FIELDS)}")
    kinds = _strings(f"{where}: kinds", spec.get("kinds", []))
    for kind in kinds:
        if kind not in _KINDS:
            raise ValueError(f"{where}: kind {kind!r} is not one of {list(_KINDS)}")
    severity = spec.get("severity", "warning")
    notify = spec.get("notify_severity", "")
    for label, value in (("severity", severity), ("notify_severity", notify or "info")):
        if value not in SEVERITY_RANK:
            raise ValueError(f"{where}: {label} must be info, warning or critical")
    labels = spec.get("labels", {})
    if not isinstance(labels, Mapping) or any(key not in _LABELS for key in labels):
        raise ValueError(f"{where}: labels may match {list(_LABELS)}")
    channels = _strings(f"{where}: channels", spec.get("channels", []))
    return AlertRule(
        name=name,
        kinds=kinds,
        services=_strings(f"{where}: services", spec.get("services", [])),
        severity=severity,
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        for_s=_duration(f"{where}: for", spec.get("for", "0s")),
        channels=channels,
        repeat_s=_duration(f"{where}: repeat", spec.get("repeat", "0s")),
        notify_severity=notify,
        monitor=parse_monitor(where, spec["monitor"]) if "monitor" in spec else None,
    )


def parse_rules(document: Any) -> tuple[AlertRule, ...]:
    """Rules from ``{"rules": [...]}`` (YAML or JSON), or ValueError naming the rule and the field."""
    if not isinstance(document, Mapping) or set(document) != {"rules"} or not isinstance(document["rules"], list):
        raise ValueError("expected a top-level 'rules:' list")
    rules = tuple(_rule(i, spec) for i, spec in enumerate(document["rules"]))
    names = [rule.name for rule in rules]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate:
        raise ValueError(f"rule {duplicate!r} is defined twice")
    return rules


def load_rules_file(path: str) -> tuple[AlertRule, ...]:
    """The rules of a YAML file, or ConfigError naming the file, the line and the reason."""
    root, document = read_yaml(path, "VIGIL_ALERT_RULES_FILE")
    lines = _rule_lines(root)
    try:
        return parse_rules(document)
    except ValueError as exc:
        message = str(exc)
        found = re.match(r"rule (\d+)|rule '([^']+)'", message)
        line = 1
        if found:
            key = int(found.group(1)) - 1 if found.group(1) else found.group(2)
            line = lines.get(key, 1)
        raise ConfigError(f"{path}:{line}: {message}") from None


def _rule_lines(root: Any) -> dict[int | str, int]:
    """Line of each rule, by index and by name."""
    lines: dict[int | str, int] = {}
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key, value in root.value:
        if key.value != "rules" or not isinstance(value, yaml.SequenceNode):
            continue
        for index, item in enumerate(value.value):
            lines[index] = item.start_mark.line + 1
            if isinstance(item, yaml.MappingNode):
                for field_key, field_value in item.value:
                    if field_key.value == "name" and isinstance(field_value, yaml.ScalarNode):
                        lines[field_value.value] = item.start_mark.line + 1
    return lines


def matching(rules: Sequence[AlertRule], **labels: str) -> list[AlertRule]:
    return [rule for rule in rules if rule.matches(**labels)]
