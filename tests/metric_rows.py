"""Rows for the metrics tables, built directly: fixtures for query tests that need exact points."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from vigil.store.schema import METRIC_ARROW_SCHEMAS
from vigil.types import rows_table

_NS = 1_000_000_000


def _default(field: pa.Field) -> Any:
    if pa.types.is_list(field.type):
        return []
    if pa.types.is_map(field.type):
        return []
    if pa.types.is_string(field.type):
        return ""
    if pa.types.is_boolean(field.type):
        return False
    if pa.types.is_floating(field.type):
        return None if field.name in ("Sum", "Min", "Max") else 0.0
    return 0


def metric_rows(table: str, points: list[dict[str, Any]]) -> pa.Table:
    """An Arrow table of `points` for `table`; a point gives `time` (Unix seconds) and any columns.

    `start` defaults to `time` for delta points; `attributes` and `service` are shorthands.
    """
    schema = METRIC_ARROW_SCHEMAS[table]
    rows: list[dict[str, Any]] = []
    for point in points:
        row = {field.name: _default(field) for field in schema}
        row["ServiceName"] = point.get("service", "svc")
        row["MetricName"] = point["name"]
        row["Attributes"] = list(point.get("attributes", {}).items())
        row["TimeUnix"] = int(point["time"] * _NS)
        row["StartTimeUnix"] = int(point.get("start", point["time"]) * _NS)
        for key, value in point.items():
            if key not in ("service", "name", "attributes", "time", "start"):
                row[key] = value
        rows.append(row)
    return rows_table(schema, rows)
