"""Network health queries over flows: top talkers, throughput, and health per customer and exporter.

Bytes and packets are scaled by each flow's sampling rate (what crossed the wire, estimated);
flow counts are as exported. Time is when Vigil received the flow records. Addresses read as
IPv4 dotted quads when they are IPv4 (stored mapped into IPv6), and an address outside every
prefix of the prefix file has the customer ``unknown``.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from vigil.store.schema import FLOW_PORTS_TOPK

__all__ = [
    "UNKNOWN",
    "CustomerHealth",
    "ExporterHealth",
    "FlowChoices",
    "LabelledSeries",
    "NetworkHealth",
    "ThroughputSeries",
    "TopTalker",
    "TopTalkersBy",
    "customer_throughput",
    "flow_choices",
    "interface_throughput",
    "network_health",
    "throughput",
    "top_customers",
    "top_talkers",
]

Query = Callable[..., list[dict[str, Any]]]
TopTalkersBy = Literal["src", "dst", "customer", "pair"]
UNKNOWN = "unknown"
# TCP flows with SYN but no ACK (a handshake that never completed) and with RST, over TCP flows.
_TCP_SHARES = "if(sum(TcpFlows) > 0, sum(SynNoAck) / sum(TcpFlows), 0) AS syn_no_ack, " + (
    "if(sum(TcpFlows) > 0, sum(Rst) / sum(TcpFlows), 0) AS rst"
)
_TOP_PORTS = 5


@dataclass(frozen=True, slots=True)
class TopTalker:
    key: str
    bytes: int
    packets: int
    flows: int


@dataclass(frozen=True, slots=True)
class ThroughputSeries:
    direction: str
    # [Unix seconds at the start of the step, value]
    bits_per_s: list[tuple[int, float]]
    packets_per_s: list[tuple[int, float]]


@dataclass(frozen=True, slots=True)
class CustomerHealth:
    customer: str
    sent_bits_per_s: float
    received_bits_per_s: float
    flows_per_s: float
    syn_no_ack_share: float
    rst_share: float
    top_dst_ports: list[int]


@dataclass(frozen=True, slots=True)
class ExporterHealth:
    exporter: str
    bits_per_s: float
    flows_per_s: float
    syn_no_ack_share: float
    rst_share: float
    top_dst_ports: list[int]
    versions: list[int]
    last_seen_unix_nano: int
    packets: int
    malformed: dict[str, int]
    templates: list[int]
    sampling_rate: int
    records_given_up: int


@dataclass(frozen=True, slots=True)
class NetworkHealth:
    customers: list[CustomerHealth]
    exporters: list[ExporterHealth]


def address_text(value: object) -> str:
    """An address as people write it: IPv4 for IPv4-mapped IPv6.

    >>> address_text(ipaddress.IPv6Address("::ffff:10.0.0.1")), address_text(ipaddress.IPv6Address("2001:db8::1"))
    ('10.0.0.1', '2001:db8::1')
    """
    address = value if isinstance(value, ipaddress.IPv6Address) else ipaddress.IPv6Address(str(value))
    return str(address.ipv4_mapped or address)


def _window(start_s: float, end_s: float) -> dict[str, int]:
    return {"start": int(start_s * 1e9), "end": int(end_s * 1e9)}


_IN_WINDOW = (
    "TimeReceived >= fromUnixTimestamp64Nano({start:Int64}) AND TimeReceived <= fromUnixTimestamp64Nano({end:Int64})"
)
_MINUTES_IN_WINDOW = (
    "Minute >= toStartOfMinute(toDateTime(intDiv({start:Int64}, 1000000000), 'UTC'))"
    " AND Minute <= toDateTime(intDiv({end:Int64}, 1000000000), 'UTC')"
)


def top_talkers(query: Query, *, by: TopTalkersBy, start_s: float, end_s: float, limit: int) -> list[TopTalker]:
    """The heaviest sources, destinations, source customers or (source, destination) pairs by bytes."""
    keys = {
        "src": "SrcAddr",
        "dst": "DstAddr",
        "customer": "SrcCustomer",
        "pair": "SrcAddr, DstAddr",
    }[by]
    rows = query(
        f"""
        SELECT {keys}, sum(Bytes * SamplingRate) AS bytes, sum(Packets * SamplingRate) AS packets, count() AS flows
        FROM {{db}}.flows
        WHERE {_IN_WINDOW}
        GROUP BY {keys}
        ORDER BY bytes DESC, flows DESC
        LIMIT {{limit:UInt32}}""",
        limit=limit,
        **_window(start_s, end_s),
    )

    def key(row: dict[str, Any]) -> str:
        if by == "customer":
            return str(row["SrcCustomer"]) or UNKNOWN
        if by == "pair":
            return f"{address_text(row['SrcAddr'])} -> {address_text(row['DstAddr'])}"
        return address_text(row["SrcAddr" if by == "src" else "DstAddr"])

    return [TopTalker(key(row), int(row["bytes"]), int(row["packets"]), int(row["flows"])) for row in rows]


def throughput(
    query: Query,
    *,
    start_s: float,
    end_s: float,
    step_s: int,
    customer: str | None = None,
    interface: int | None = None,
    exporter: str | None = None,
) -> list[ThroughputSeries]:
    """Bits/s and packets/s per step and direction. For a customer, "in" is what it sent into the
    network and "out" what was delivered to it; for an interface, what entered and left by it.
    Without either, the whole network, counted once ("in")."""
    conditions = [_MINUTES_IN_WINDOW]
    params: dict[str, Any] = {"step": step_s, **_window(start_s, end_s)}
    if customer is not None:
        conditions.append("Customer = {customer:String}")
        params["customer"] = "" if customer == UNKNOWN else customer
    if interface is not None:
        conditions.append("Interface = {interface:UInt32}")
        params["interface"] = interface
    if exporter is not None:
        conditions.append("Exporter = toIPv6({exporter:String})")
        params["exporter"] = exporter
    if customer is None and interface is None:
        conditions.append("Direction = 'in'")
    rows = query(
        f"""
        SELECT toString(Direction) AS direction,
               intDiv(toUnixTimestamp(Minute), {{step:UInt32}}) * {{step:UInt32}} AS t,
               sum(Bytes) * 8 / {{step:UInt32}} AS bps, sum(Packets) / {{step:UInt32}} AS pps
        FROM {{db}}.flows_1m
        WHERE {" AND ".join(conditions)}
        GROUP BY direction, t
        ORDER BY direction, t""",
        **params,
    )
    series: dict[str, ThroughputSeries] = {}
    for row in rows:
        s = series.setdefault(row["direction"], ThroughputSeries(row["direction"], [], []))
        s.bits_per_s.append((int(row["t"]), float(row["bps"])))
        s.packets_per_s.append((int(row["t"]), float(row["pps"])))
    return list(series.values())


def _top_ports(query: Query, column: str, start_s: float, end_s: float) -> dict[str, list[int]]:
    """The most used destination ports (by flows, most first, the lower port first on a tie) per value
    of `column` ("Customer", the source's, or "Exporter"), TCP and UDP only, from the per-minute
    port rollup's topK states."""
    rows = query(
        f"""
        SELECT {column} AS owner,
               arraySlice(
                   arrayMap(p -> p.1, arraySort(p -> (-p.2, p.1), topKMerge({FLOW_PORTS_TOPK})(DstPorts))),
                   1, {_TOP_PORTS}
               ) AS ports
        FROM {{db}}.flow_ports_1m
        WHERE {_MINUTES_IN_WINDOW}
        GROUP BY owner""",
        **_window(start_s, end_s),
    )
    return {
        address_text(row["owner"]) if column == "Exporter" else str(row["owner"]): [int(p) for p in row["ports"]]
        for row in rows
    }


def network_health(query: Query, *, start_s: float, end_s: float, exporter_ports: bool = True) -> NetworkHealth:
    """Per customer and per exporter: throughput, flows/s, failed-handshake and reset shares,
    top destination ports, and for exporters what the receiver knows (last seen, templates).

    A customer's flows/s and top ports are of the flows it sent; its TCP shares are over TCP
    flows with it at either end. An exporter's figures count each flow once. Every figure comes from
    per-minute rollups (minutes in the window); no single flow is read. Without `exporter_ports`,
    exporters' top ports are left empty (a tenth of a second less over an hour of 10,000 flows/s)."""
    window_s = max(end_s - start_s, 1.0)
    params = _window(start_s, end_s)
    customers = query(
        f"""
        SELECT toString(Customer) AS customer,
               sumIf(Bytes, Direction = 'in') * 8 AS sent_bits, sumIf(Bytes, Direction = 'out') * 8 AS received_bits,
               sumIf(Flows, Direction = 'in') AS flows, {_TCP_SHARES}
        FROM {{db}}.flows_1m
        WHERE {_MINUTES_IN_WINDOW}
        GROUP BY customer
        ORDER BY sent_bits + received_bits DESC""",
        **params,
    )
    # Customer ports: the flows a customer sent (its clients' destinations).
    customer_ports = _top_ports(query, "Customer", start_s, end_s)
    traffic = query(
        f"""
        SELECT Exporter, sum(Bytes) * 8 AS bits, sum(Flows) AS flows, {_TCP_SHARES}
        FROM {{db}}.flows_1m
        WHERE {_MINUTES_IN_WINDOW} AND Direction = 'in'
        GROUP BY Exporter""",
        **params,
    )
    by_exporter = {address_text(row["Exporter"]): row for row in traffic}
    ports_by_exporter = _top_ports(query, "Exporter", start_s, end_s) if exporter_ports else {}
    status = query(
        """
        SELECT Exporter, groupArray(FlowVersion) AS versions,
               toUnixTimestamp64Nano(max(LastSeen)) AS last_seen, sum(Packets) AS packets,
               sumMap(Malformed) AS malformed, arraySort(arrayDistinct(groupArrayArray(Templates))) AS templates,
               max(SamplingRate) AS sampling_rate, sum(GivenUp) AS given_up
        FROM (
            SELECT Exporter, FlowVersion, ObservationDomain,
                   argMax(LastSeen, Time) AS LastSeen, argMax(Packets, Time) AS Packets,
                   argMax(Malformed, Time) AS Malformed, argMax(Templates, Time) AS Templates,
                   argMax(SamplingRate, Time) AS SamplingRate, argMax(GivenUp, Time) AS GivenUp
            FROM {db}.flow_exporters
            GROUP BY Exporter, FlowVersion, ObservationDomain
        )
        GROUP BY Exporter
        ORDER BY Exporter""",
    )
    known = {address_text(row["Exporter"]): row for row in status}
    exporters = []
    for name in sorted(known.keys() | by_exporter.keys()):
        # Traffic without a status report yet (reports come every few seconds) still shows.
        row = known.get(name, {"versions": [], "last_seen": 0, "packets": 0, "malformed": {}, "templates": []})
        row.setdefault("sampling_rate", 0)
        row.setdefault("given_up", 0)
        seen = by_exporter.get(name, {})
        exporters.append(
            ExporterHealth(
                exporter=name,
                bits_per_s=round(float(seen.get("bits", 0)) / window_s, 3),
                flows_per_s=round(float(seen.get("flows", 0)) / window_s, 3),
                syn_no_ack_share=round(float(seen.get("syn_no_ack", 0.0)), 4),
                rst_share=round(float(seen.get("rst", 0.0)), 4),
                top_dst_ports=ports_by_exporter.get(name, []),
                versions=sorted(set(row["versions"])),
                last_seen_unix_nano=int(row["last_seen"]),
                packets=int(row["packets"]),
                malformed={str(k): int(v) for k, v in row["malformed"].items()},
                templates=list(row["templates"]),
                sampling_rate=int(row["sampling_rate"]),
                records_given_up=int(row["given_up"]),
            )
        )
    return NetworkHealth(
        customers=[
            CustomerHealth(
                customer=row["customer"] or UNKNOWN,
                sent_bits_per_s=round(float(row["sent_bits"]) / window_s, 3),
                received_bits_per_s=round(float(row["received_bits"]) / window_s, 3),
                flows_per_s=round(float(row["flows"]) / window_s, 3),
                syn_no_ack_share=round(float(row["syn_no_ack"]), 4),
                rst_share=round(float(row["rst"]), 4),
                top_dst_ports=customer_ports.get(row["customer"], []),
            )
            for row in customers
        ],
        exporters=exporters,
    )


@dataclass(frozen=True, slots=True)
class LabelledSeries:
    """Bits/s per step of one customer or interface (``exporter:index``) in one direction."""

    label: str
    direction: str
    # [Unix seconds at the start of the step, bits/s]; steps without traffic are left out
    bits_per_s: list[tuple[int, float]]
    bytes: int  # over the whole window


@dataclass(frozen=True, slots=True)
class FlowChoices:
    """What a window's flows can be narrowed to: customers, and interfaces as ``exporter:index``."""

    customers: list[str]
    interfaces: list[str]


def _rollup_filters(customer: str | None, exporter: str | None, interface: int | None) -> tuple[str, dict[str, Any]]:
    conditions = [_MINUTES_IN_WINDOW]
    params: dict[str, Any] = {}
    if customer is not None:
        conditions.append("Customer = {customer:String}")
        params["customer"] = "" if customer == UNKNOWN else customer
    if exporter is not None:
        conditions.append("Exporter = toIPv6({exporter:String})")
        params["exporter"] = exporter
    if interface is not None:
        conditions.append("Interface = {interface:UInt32}")
        params["interface"] = interface
    return " AND ".join(conditions), params


def _labelled(rows: list[dict[str, Any]], label: Callable[[dict[str, Any]], str], step_s: int) -> list[LabelledSeries]:
    """Series from (label columns, direction, t, bytes) rows, heaviest label first, "in" before "out"."""
    points: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    sent: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        key = (label(row), str(row["direction"]))
        points[key].append((int(row["t"]), int(row["bytes"]) * 8 / step_s))
        sent[key] += int(row["bytes"])
    per_label: dict[str, int] = defaultdict(int)
    for (name, _), total in sent.items():
        per_label[name] += total
    order = sorted(points, key=lambda key: (-per_label[key[0]], key[0], key[1]))
    return [LabelledSeries(name, direction, sorted(points[(name, direction)]), sent[(name, direction)])
            for name, direction in order]  # fmt: skip


def customer_throughput(
    query: Query,
    *,
    start_s: float,
    end_s: float,
    step_s: int,
    limit: int = 5,
    customer: str | None = None,
    exporter: str | None = None,
    interface: int | None = None,
) -> list[LabelledSeries]:
    """Bits/s per step of the `limit` customers with the most traffic: "in" is what a customer sent
    into the network, "out" what was delivered to it. An exporter and interface keep the traffic
    that entered or left by that interface."""
    where, params = _rollup_filters(customer, exporter, interface)
    rows = query(
        f"""
        SELECT toString(Customer) AS customer, toString(Direction) AS direction,
               intDiv(toUnixTimestamp(Minute), {{step:UInt32}}) * {{step:UInt32}} AS t, sum(Bytes) AS bytes
        FROM {{db}}.flows_1m
        WHERE {where} AND Customer IN (
            SELECT Customer FROM {{db}}.flows_1m WHERE {where}
            GROUP BY Customer ORDER BY sum(Bytes) DESC, Customer LIMIT {{limit:UInt32}})
        GROUP BY customer, direction, t""",
        step=step_s,
        limit=limit,
        **params,
        **_window(start_s, end_s),
    )
    return _labelled(rows, lambda row: str(row["customer"]) or UNKNOWN, step_s)


def interface_throughput(
    query: Query,
    *,
    start_s: float,
    end_s: float,
    step_s: int,
    limit: int = 5,
    customer: str | None = None,
    exporter: str | None = None,
    interface: int | None = None,
) -> list[LabelledSeries]:
    """Bits/s per step of the `limit` busiest interfaces (``exporter:index``): "in" entered the
    network by the interface, "out" left by it. A customer keeps the traffic it sent or received."""
    where, params = _rollup_filters(customer, exporter, interface)
    rows = query(
        f"""
        SELECT Exporter AS exporter, Interface AS interface, toString(Direction) AS direction,
               intDiv(toUnixTimestamp(Minute), {{step:UInt32}}) * {{step:UInt32}} AS t, sum(Bytes) AS bytes
        FROM {{db}}.flows_1m
        WHERE {where} AND (Exporter, Interface) IN (
            SELECT Exporter, Interface FROM {{db}}.flows_1m WHERE {where}
            GROUP BY Exporter, Interface ORDER BY sum(Bytes) DESC, Exporter, Interface LIMIT {{limit:UInt32}})
        GROUP BY exporter, interface, direction, t""",
        step=step_s,
        limit=limit,
        **params,
        **_window(start_s, end_s),
    )
    return _labelled(rows, lambda row: f"{address_text(row['exporter'])}:{int(row['interface'])}", step_s)


def top_customers(query: Query, *, start_s: float, end_s: float, limit: int) -> list[TopTalker]:
    """The source customers that sent the most bytes, from the per-minute rollup (whole minutes):
    the same figures as ``top_talkers(by="customer")`` without reading single flows."""
    rows = query(
        f"""
        SELECT toString(Customer) AS customer, sum(Bytes) AS bytes, sum(Packets) AS packets, sum(Flows) AS flows
        FROM {{db}}.flows_1m
        WHERE {_MINUTES_IN_WINDOW} AND Direction = 'in'
        GROUP BY customer
        ORDER BY bytes DESC, flows DESC, customer
        LIMIT {{limit:UInt32}}""",
        limit=limit,
        **_window(start_s, end_s),
    )
    return [
        TopTalker(row["customer"] or UNKNOWN, int(row["bytes"]), int(row["packets"]), int(row["flows"])) for row in rows
    ]


def flow_choices(query: Query, *, start_s: float, end_s: float, limit: int = 500) -> FlowChoices:
    """The customers and interfaces with flows in the window, by name."""
    params = {"limit": limit, **_window(start_s, end_s)}
    customers = query(
        f"""
        SELECT DISTINCT toString(Customer) AS customer FROM {{db}}.flows_1m
        WHERE {_MINUTES_IN_WINDOW} ORDER BY customer LIMIT {{limit:UInt32}}""",
        **params,
    )
    interfaces = query(
        f"""
        SELECT DISTINCT Exporter AS exporter, Interface AS interface FROM {{db}}.flows_1m
        WHERE {_MINUTES_IN_WINDOW} ORDER BY exporter, interface LIMIT {{limit:UInt32}}""",
        **params,
    )
    return FlowChoices(
        customers=sorted({row["customer"] or UNKNOWN for row in customers}),
        interfaces=[f"{address_text(row['exporter'])}:{int(row['interface'])}" for row in interfaces],
    )
