"""Rows for the flows tables, built directly: fixtures for network queries that need exact flows."""

from __future__ import annotations

import ipaddress
from typing import Any

import pyarrow as pa

from vigil.store.schema import FLOW_EXPORTERS_ARROW_SCHEMA, FLOWS_ARROW_SCHEMA
from vigil.types import rows_table

_NS = 1_000_000_000


def address(text: str) -> bytes:
    """16 bytes of an address, IPv4 mapped into IPv6 as the flows table stores it."""
    parsed = ipaddress.ip_address(text)
    if isinstance(parsed, ipaddress.IPv4Address):
        parsed = ipaddress.IPv6Address(f"::ffff:{parsed}")
    return parsed.packed


def flow_rows(flows: list[dict[str, Any]]) -> pa.Table:
    """Flows given as `time` (Unix seconds received), `src`, `dst` (addresses as text) and any columns."""
    rows = []
    for flow in flows:
        received = int(flow["time"] * _NS)
        row: dict[str, Any] = {
            "TimeReceived": received,
            "FlowStart": received - _NS,
            "FlowEnd": received,
            "Exporter": address(flow.get("exporter", "192.0.2.1")),
            "FlowVersion": 9,
            "ObservationDomain": 0,
            "SrcAddr": address(flow["src"]),
            "DstAddr": address(flow["dst"]),
            "SrcPort": 40000,
            "DstPort": 443,
            "Protocol": 6,
            "TcpFlags": 0x1B,
            "Tos": 0,
            "InputInterface": 1,
            "OutputInterface": 2,
            "Bytes": 1000,
            "Packets": 10,
            "SamplingRate": 1,
            "SrcAs": 0,
            "DstAs": 0,
            "SrcPrefix": "",
            "SrcCustomer": "",
            "SrcSite": "",
            "DstPrefix": "",
            "DstCustomer": "",
            "DstSite": "",
        }
        row.update({k: v for k, v in flow.items() if k not in ("time", "src", "dst", "exporter")})
        rows.append(row)
    return rows_table(FLOWS_ARROW_SCHEMA, rows)


def exporter_rows(reports: list[dict[str, Any]]) -> pa.Table:
    """Exporter status reports given as `time`, `exporter` (text) and any columns."""
    rows = []
    for report in reports:
        at = int(report["time"] * _NS)
        row: dict[str, Any] = {
            "Time": at,
            "Exporter": address(report["exporter"]),
            "FlowVersion": 9,
            "ObservationDomain": 0,
            "FirstSeen": at,
            "LastSeen": at,
            "Packets": 0,
            "Flows": 0,
            "Malformed": [],
            "Templates": [],
            "SamplingRate": 1,
            "GivenUp": 0,
        }
        row.update({k: v for k, v in report.items() if k not in ("time", "exporter")})
        rows.append(row)
    return rows_table(FLOW_EXPORTERS_ARROW_SCHEMA, rows)
