"""Monitors: an alert rule that watches a metric query instead of waiting for a detector's finding.

A monitor is the metrics API's query (metric `name`, `agg`, `filter`, `group_by`) evaluated per
minute with a `condition`: a comparison with a threshold (``"> 30"``, ``">= 0.9"``, ``"< 5"``) or
``anomalous`` (the level-shift detector on the series). A breach is a finding of kind ``monitor``
(its `operation` is the rule's name, its `signal` the metric, its `service` the ``service``
group when grouped by service, else the rule's name), which the rule then alerts on like any finding, ``for`` and all:

```yaml
rules:
  - name: replica-lag
    monitor: {metric: db.replication.lag_seconds, agg: max, group_by: [replica], condition: "> 30"}
    for: 2m
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["AGGREGATIONS", "MonitorSpec", "parse_monitor"]

AGGREGATIONS = ("avg", "sum", "max", "min", "p50", "p95", "p99", "rate")
_CONDITION = re.compile(r"^\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$")
_FIELDS = {"metric", "agg", "filter", "group_by", "condition"}


@dataclass(frozen=True, slots=True)
class MonitorSpec:
    metric: str
    agg: str
    condition: str  # "anomalous", or an operator and a threshold
    filters: tuple[tuple[str, str], ...] = ()
    group_by: tuple[str, ...] = ()

    @property
    def comparison(self) -> tuple[str, float] | None:
        """(operator, threshold), or None for ``anomalous``."""
        match = _CONDITION.match(self.condition)
        return None if match is None else (match.group(1), float(match.group(2)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "agg": self.agg,
            "filter": dict(self.filters),
            "group_by": list(self.group_by),
            "condition": self.condition,
        }


def parse_monitor(where: str, raw: Any) -> MonitorSpec:
    """A monitor from its fields, or ValueError naming `where` and the field."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: monitor must be a mapping of metric, agg, filter, group_by, condition")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise ValueError(f"{where}: monitor has an unknown field {unknown[0]!r}; expected some of {sorted(_FIELDS)}")
    metric = raw.get("metric")
    if not isinstance(metric, str) or not metric.strip():
        raise ValueError(f"{where}: monitor needs a metric name")
    agg = raw.get("agg", "avg")
    if agg not in AGGREGATIONS:
        raise ValueError(f"{where}: monitor agg must be one of {list(AGGREGATIONS)}")
    condition = str(raw.get("condition", ""))
    if condition != "anomalous" and _CONDITION.match(condition) is None:
        raise ValueError(f"{where}: monitor condition must be like '> 30', '<= 0.5' or 'anomalous'")
    filters = raw.get("filter", {})
    group_by = raw.get("group_by", [])
    if not isinstance(filters, Mapping) or not isinstance(group_by, list):
        raise ValueError(f"{where}: monitor filter is a mapping of label to value, group_by a list of labels")
    return MonitorSpec(
        metric=metric.strip(),
        agg=agg,
        condition=condition.strip(),
        filters=tuple(sorted((str(k), str(v)) for k, v in filters.items())),
        group_by=tuple(str(label) for label in group_by),
    )
