"""Reads for the detectors: per-bucket series from rollups, and evidence for findings.

Bucket reads return rows for buckets that start in [start, end); times are unix seconds.
Evidence reads (exemplars, over-represented attributes, versions) go to the raw spans, but
only for the one series and window of a finding as it opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from vigil.store.findings import AttributeShare

__all__ = [
    "FlowBucket",
    "FlowScope",
    "FlowScopeBucket",
    "GaugePoint",
    "RedBucket",
    "exemplar_trace_ids",
    "exporter_last_seen",
    "flow_buckets",
    "flow_scope_buckets",
    "flow_scopes",
    "flow_top_ports",
    "gauge_points",
    "red_buckets",
    "sum_points",
    "top_attributes",
]

# Spans an evidence query looks at at most, per side (bad window / baseline window).
_EVIDENCE_SPANS = 20_000
# Flows a port-evidence query looks at at most, per side.
_EVIDENCE_FLOWS = 200_000
# Attribute values a finding lists, and the share of bad requests one must reach to be listed.
_TOP_ATTRIBUTES = 5
_MIN_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class RedBucket:
    minute: float
    service: str
    operation: str  # "" for the whole service
    requests: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class GaugePoint:
    time: float
    service: str
    name: str
    attributes: dict[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class FlowBucket:
    minute: float
    customer: str
    direction: str  # "in" or "out"
    bytes: int
    packets: int
    flows: int
    tcp_flows: int
    syn_no_ack: int


@dataclass(frozen=True, slots=True)
class FlowScopeBucket:
    """One minute of one (exporter, interface, direction, customer): the finest cut of the flow rollup."""

    minute: float
    exporter: str  # as people write it: IPv4 dotted quad for IPv4 exporters
    interface: int
    direction: str  # "in" (entered by the interface, sent by the customer) or "out"
    customer: str  # "" for addresses outside every prefix
    bytes: int
    flows: int
    tcp_flows: int
    syn_no_ack: int


@dataclass(frozen=True, slots=True)
class FlowScope:
    """What one exporter carried for one (interface, direction, customer) over a window."""

    exporter: str
    interface: int
    direction: str
    customer: str
    bytes: int
    minutes: int  # minutes with traffic in the window


def _rows(client: Client, sql: str, database: str, **parameters: Any) -> list[Sequence[Any]]:
    return list(client.query(sql.replace("{db}", database), parameters=parameters).result_rows)


def red_buckets(client: Client, database: str, start: float, end: float) -> list[RedBucket]:
    """Per minute: each (service, operation) and each whole service, from the RED rollup."""
    window = "Minute >= toDateTime({start:Float64}) AND Minute < toDateTime({end:Float64})"
    by_operation = _rows(
        client,
        f"""SELECT toUnixTimestamp(Minute), ServiceName, SpanName, sum(Requests), sum(Errors),
                  quantilesTDigestMerge(0.5, 0.95, 0.99)(DurationQuantiles)
           FROM {{db}}.spans_red_1m WHERE {window}
           GROUP BY Minute, ServiceName, SpanName ORDER BY Minute""",
        database,
        start=start,
        end=end,
    )
    by_service = _rows(
        client,
        f"""SELECT toUnixTimestamp(Minute), ServiceName, '', sum(Requests), sum(Errors),
                  quantilesTDigestMerge(0.5, 0.95, 0.99)(DurationQuantiles)
           FROM {{db}}.spans_red_1m WHERE {window}
           GROUP BY Minute, ServiceName ORDER BY Minute""",
        database,
        start=start,
        end=end,
    )
    return [
        RedBucket(
            minute=float(minute),
            service=service,
            operation=operation,
            requests=int(requests),
            errors=int(errors),
            p50_ms=float(q[0]) / 1e6,
            p95_ms=float(q[1]) / 1e6,
            p99_ms=float(q[2]) / 1e6,
        )
        for minute, service, operation, requests, errors, q in by_operation + by_service
    ]


def gauge_points(client: Client, database: str, names: tuple[str, ...], start: float, end: float) -> list[GaugePoint]:
    """Raw points of the gauges `names` with times in [start, end), oldest first."""
    if not names:
        return []
    rows = _rows(
        client,
        """SELECT toUnixTimestamp64Milli(TimeUnix) / 1000, ServiceName, MetricName, Attributes, Value
           FROM {db}.metrics_gauge
           WHERE MetricName IN {names:Array(String)}
             AND TimeUnix >= fromUnixTimestamp64Milli(toInt64({start:Float64} * 1000))
             AND TimeUnix < fromUnixTimestamp64Milli(toInt64({end:Float64} * 1000))
           ORDER BY TimeUnix""",
        database,
        names=list(names),
        start=start,
        end=end,
    )
    return [
        GaugePoint(time=float(t), service=service, name=name, attributes=dict(attributes), value=float(value))
        for t, service, name, attributes, value in rows
    ]


def sum_points(
    client: Client, database: str, service: str, names: tuple[str, ...], start: float, end: float
) -> list[GaugePoint]:
    """Raw delta points of the sums `names` of `service` with times in [start, end), oldest first."""
    if not names:
        return []
    rows = _rows(
        client,
        """SELECT toUnixTimestamp64Milli(TimeUnix) / 1000, ServiceName, MetricName, Attributes, Value
           FROM {db}.metrics_sum
           WHERE ServiceName = {service:String} AND MetricName IN {names:Array(String)}
             AND AggregationTemporality = 1
             AND TimeUnix >= fromUnixTimestamp64Milli(toInt64({start:Float64} * 1000))
             AND TimeUnix < fromUnixTimestamp64Milli(toInt64({end:Float64} * 1000))
           ORDER BY TimeUnix""",
        database,
        service=service,
        names=list(names),
        start=start,
        end=end,
    )
    return [
        GaugePoint(time=float(t), service=service, name=name, attributes=dict(attributes), value=float(value))
        for t, service, name, attributes, value in rows
    ]


def flow_buckets(client: Client, database: str, start: float, end: float) -> list[FlowBucket]:
    """Per minute, customer and direction: traffic and TCP handshake outcomes from the flow rollup."""
    rows = _rows(
        client,
        """SELECT toUnixTimestamp(Minute), Customer, Direction, sum(Bytes), sum(Packets), sum(Flows),
                  sum(TcpFlows), sum(SynNoAck)
           FROM {db}.flows_1m
           WHERE Minute >= toDateTime({start:Float64}) AND Minute < toDateTime({end:Float64})
           GROUP BY Minute, Customer, Direction ORDER BY Minute""",
        database,
        start=start,
        end=end,
    )
    return [
        FlowBucket(
            minute=float(minute),
            customer=customer,
            direction=direction,
            bytes=int(nbytes),
            packets=int(packets),
            flows=int(flows),
            tcp_flows=int(tcp),
            syn_no_ack=int(syn),
        )
        for minute, customer, direction, nbytes, packets, flows, tcp, syn in rows
    ]


def _exporter_text(address: str) -> str:
    return address.removeprefix("::ffff:")


def _received(start_name: str, end_name: str) -> str:
    return (
        f"TimeReceived >= fromUnixTimestamp64Milli(toInt64({{{start_name}:Float64}} * 1000)) "
        f"AND TimeReceived < fromUnixTimestamp64Milli(toInt64({{{end_name}:Float64}} * 1000))"
    )


_FLOW_MINUTES = "Minute >= toDateTime({start:Float64}) AND Minute < toDateTime({end:Float64})"


def flow_scope_buckets(client: Client, database: str, start: float, end: float) -> list[FlowScopeBucket]:
    """Per minute, exporter, interface, direction and customer (protocols summed), oldest first."""
    rows = _rows(
        client,
        f"""SELECT toUnixTimestamp(Minute), IPv6NumToString(Exporter), Interface, Direction, Customer,
                  sum(Bytes), sum(Flows), sum(TcpFlows), sum(SynNoAck)
           FROM {{db}}.flows_1m
           WHERE {_FLOW_MINUTES}
           GROUP BY Minute, Exporter, Interface, Direction, Customer ORDER BY Minute""",
        database,
        start=start,
        end=end,
    )
    return [
        FlowScopeBucket(
            minute=float(minute),
            exporter=_exporter_text(exporter),
            interface=int(interface),
            direction=str(direction),
            customer=str(customer),
            bytes=int(nbytes),
            flows=int(flows),
            tcp_flows=int(tcp),
            syn_no_ack=int(syn),
        )
        for minute, exporter, interface, direction, customer, nbytes, flows, tcp, syn in rows
    ]


def flow_scopes(client: Client, database: str, exporters: Sequence[str], start: float, end: float) -> list[FlowScope]:
    """What each of `exporters` carried per (interface, direction, customer) in minutes [start, end)."""
    if not exporters:
        return []
    rows = _rows(
        client,
        f"""SELECT IPv6NumToString(Exporter), Interface, Direction, Customer, sum(Bytes), uniqExact(Minute)
           FROM {{db}}.flows_1m
           WHERE Exporter IN (SELECT toIPv6(arrayJoin({{exporters:Array(String)}}))) AND {_FLOW_MINUTES}
           GROUP BY Exporter, Interface, Direction, Customer""",
        database,
        exporters=list(exporters),
        start=start,
        end=end,
    )
    return [
        FlowScope(
            exporter=_exporter_text(exporter),
            interface=int(interface),
            direction=str(direction),
            customer=str(customer),
            bytes=int(nbytes),
            minutes=int(minutes),
        )
        for exporter, interface, direction, customer, nbytes, minutes in rows
    ]


def flow_top_ports(
    client: Client,
    database: str,
    *,
    direction: str,
    customer: str | None = None,
    exporter: str | None = None,
    interface: int | None = None,
    bad_start: float,
    bad_end: float,
    baseline_start: float,
    failed_handshakes: bool,
) -> list[AttributeShare]:
    """Destination ports over-represented in [bad_start, bad_end) against [baseline_start, bad_start).

    The flows are those of one customer (`customer`, "" for unknown) or one interface (`exporter`
    and `interface`) in `direction`, as the flow rollup counts them. With `failed_handshakes`, a
    port's share is of the TCP flows with SYN but no ACK in the bad window, against its share of
    all TCP flows before; otherwise it is a share of bytes (TCP and UDP) in each window.
    """
    if direction not in ("in", "out"):
        raise ValueError(f"direction must be in or out, not {direction!r}")
    side = "Src" if direction == "in" else "Dst"
    port = "Input" if direction == "in" else "Output"
    if customer is not None:
        scope = f"{side}Customer = {{customer:String}}"
    elif exporter is not None and interface is not None:
        scope = f"Exporter = toIPv6({{exporter:String}}) AND {port}Interface = {{interface:UInt32}}"
    else:
        raise ValueError("flow_top_ports needs a customer, or an exporter and an interface")
    if failed_handshakes:
        weight, base_filter = "1", "Protocol = 6"
        bad_filter = "Protocol = 6 AND bitAnd(TcpFlags, 2) != 0 AND bitAnd(TcpFlags, 16) = 0"
    else:
        weight, base_filter = "Bytes * SamplingRate", "Protocol IN (6, 17)"
        bad_filter = base_filter
    rows = _rows(
        client,
        f"""
        WITH bad AS (
                SELECT DstPort AS port, {weight} AS w FROM {{db}}.flows
                WHERE {scope} AND {_received("bad_start", "bad_end")} AND {bad_filter}
                LIMIT {_EVIDENCE_FLOWS}),
             base AS (
                SELECT DstPort AS port, {weight} AS w FROM {{db}}.flows
                WHERE {scope} AND {_received("baseline_start", "bad_start")} AND {base_filter}
                LIMIT {_EVIDENCE_FLOWS}),
             bad_ports AS (SELECT port, sum(w) AS n FROM bad GROUP BY port),
             base_ports AS (SELECT port, sum(w) AS n FROM base GROUP BY port)
        SELECT b.port, b.n / (SELECT sum(w) FROM bad) AS share,
               ifNull(base_ports.n, 0) / greatest((SELECT sum(w) FROM base), 1) AS baseline_share
        FROM bad_ports AS b LEFT JOIN base_ports ON b.port = base_ports.port
        WHERE share >= {_MIN_SHARE} AND share > baseline_share
        ORDER BY share - baseline_share DESC, b.port
        LIMIT {_TOP_ATTRIBUTES}""",
        database,
        customer=customer or "",
        exporter=exporter or "",
        interface=interface or 0,
        bad_start=bad_start,
        bad_end=bad_end,
        baseline_start=baseline_start,
    )
    return [
        AttributeShare(
            attribute="destination.port",
            value=str(p),
            share=round(float(share), 4),
            baseline_share=round(float(b), 4),
        )
        for p, share, b in rows
    ]


def exporter_last_seen(client: Client, database: str, before: float) -> dict[str, float]:
    """Each flow exporter's last-seen time (unix seconds) as known at `before`."""
    rows = _rows(
        client,
        """SELECT IPv6NumToString(Exporter), toUnixTimestamp64Milli(max(LastSeen)) / 1000
           FROM {db}.flow_exporters
           WHERE Time < fromUnixTimestamp64Milli(toInt64({before:Float64} * 1000))
           GROUP BY Exporter""",
        database,
        before=before,
    )
    return {address.removeprefix("::ffff:"): float(seen) for address, seen in rows}


def _span_filter(operation: str) -> str:
    # The same spans the RED rollup counts: entry spans, one per request.
    entry = "(SpanKind IN ('Server', 'Consumer') OR ParentSpanId = '')"
    if operation:
        return f"ServiceName = {{service:String}} AND SpanName = {{operation:String}} AND {entry}"
    return f"ServiceName = {{service:String}} AND {entry}"


def _window(start_name: str, end_name: str) -> str:
    return (
        f"Timestamp >= fromUnixTimestamp64Milli(toInt64({{{start_name}:Float64}} * 1000)) "
        f"AND Timestamp < fromUnixTimestamp64Milli(toInt64({{{end_name}:Float64}} * 1000))"
    )


def exemplar_trace_ids(
    client: Client,
    database: str,
    *,
    service: str,
    operation: str,
    start: float,
    end: float,
    errors: bool,
    limit: int = 5,
) -> list[str]:
    """Trace ids of the slowest (or erroring, slowest first) requests of a series in a window."""
    error_filter = "AND StatusCode = 'Error'" if errors else ""
    rows = _rows(
        client,
        f"""SELECT TraceId FROM {{db}}.spans
           WHERE {_span_filter(operation)} AND {_window("start", "end")} {error_filter}
           ORDER BY Duration DESC LIMIT {{limit:UInt32}}""",
        database,
        service=service,
        operation=operation,
        start=start,
        end=end,
        limit=limit,
    )
    return [str(row[0]) for row in rows]


def top_attributes(
    client: Client,
    database: str,
    *,
    service: str,
    operation: str,
    bad_start: float,
    bad_end: float,
    baseline_start: float,
    slow_ms: float | None,
) -> list[AttributeShare]:
    """Attribute values most over-represented among bad requests against the baseline window.

    Bad requests are those in [bad_start, bad_end) slower than `slow_ms`, or erroring when
    `slow_ms` is None. Span and resource attributes are both considered; the baseline is all
    requests in [baseline_start, bad_start).
    """
    bad = "Duration > toUInt64({slow_ns:Float64})" if slow_ms is not None else "StatusCode = 'Error'"
    attributes = "arrayConcat(mapKeys(SpanAttributes), mapKeys(ResourceAttributes))"
    values = "arrayConcat(mapValues(SpanAttributes), mapValues(ResourceAttributes))"
    rows = _rows(
        client,
        f"""
        WITH bad AS (
                SELECT {attributes} AS keys, {values} AS vals FROM {{db}}.spans
                WHERE {_span_filter(operation)} AND {_window("bad_start", "bad_end")} AND {bad}
                LIMIT {_EVIDENCE_SPANS}),
             base AS (
                SELECT {attributes} AS keys, {values} AS vals FROM {{db}}.spans
                WHERE {_span_filter(operation)} AND {_window("baseline_start", "bad_start")}
                LIMIT {_EVIDENCE_SPANS}),
             bad_counts AS (
                SELECT k, v, count() AS n FROM bad ARRAY JOIN keys AS k, vals AS v GROUP BY k, v),
             base_counts AS (
                SELECT k, v, count() AS n FROM base ARRAY JOIN keys AS k, vals AS v GROUP BY k, v)
        SELECT b.k, b.v, b.n / (SELECT count() FROM bad) AS share,
               ifNull(base_counts.n, 0) / greatest((SELECT count() FROM base), 1) AS baseline_share
        FROM bad_counts AS b LEFT JOIN base_counts ON b.k = base_counts.k AND b.v = base_counts.v
        WHERE share >= {_MIN_SHARE} AND share > baseline_share
        ORDER BY share - baseline_share DESC, b.k, b.v
        LIMIT {_TOP_ATTRIBUTES}""",
        database,
        service=service,
        operation=operation,
        bad_start=bad_start,
        bad_end=bad_end,
        baseline_start=baseline_start,
        slow_ns=(slow_ms or 0.0) * 1e6,
    )
    return [
        AttributeShare(attribute=str(k), value=str(v), share=round(float(share), 4), baseline_share=round(float(b), 4))
        for k, v, share, b in rows
    ]
