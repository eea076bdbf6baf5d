"""Throughput per customer and interface, customers from the rollup, and filter choices, over flows
written straight into the store: exact figures."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from tests.flow_rows import flow_rows
from vigil.store.client import Client
from vigil.store.flows_read import (
    FlowChoices,
    LabelledSeries,
    TopTalker,
    customer_throughput,
    flow_choices,
    interface_throughput,
    network_health,
    top_customers,
    top_talkers,
)
from vigil.store.migrate import migrate
from vigil.store.read import StoreReader
from vigil.store.schema import DdlContext
from vigil.store.write import StoreWriter

# Whole minutes in the past hour.
MINUTE = int(time.time()) // 60 * 60 - 600
FLOWS: list[dict[str, Any]] = [
    # acme sends from interface 1 to the internet via 2, sampled 1 in 10, in two minutes.
    {"time": MINUTE + 1, "src": "10.1.0.5", "dst": "203.0.113.9", "Bytes": 1000, "Packets": 2, "SamplingRate": 10,
     "SrcCustomer": "acme"},
    {"time": MINUTE + 61, "src": "10.1.0.5", "dst": "203.0.113.9", "Bytes": 600, "Packets": 1, "SrcCustomer": "acme"},
    # globex receives from acme through another exporter, interface 7 to 8.
    {"time": MINUTE + 2, "src": "10.1.0.6", "dst": "10.2.0.1", "Bytes": 300, "Packets": 3, "SrcCustomer": "acme",
     "DstCustomer": "globex", "exporter": "192.0.2.2", "InputInterface": 7, "OutputInterface": 8},
]  # fmt: skip
WINDOW = {"start_s": MINUTE - 60, "end_s": MINUTE + 180}


@pytest.fixture
def reader(chdb_client: Client, database: str) -> StoreReader:
    migrate(chdb_client, DdlContext(database=database))
    StoreWriter(chdb_client, database).insert("flows", flow_rows(FLOWS))
    return StoreReader(chdb_client, database)


def test_customer_throughput_per_step_heaviest_first(reader: StoreReader) -> None:
    assert customer_throughput(reader.query, step_s=60, **WINDOW) == [
        LabelledSeries("acme", "in", [(MINUTE, 10300 * 8 / 60), (MINUTE + 60, 600 * 8 / 60)], 10900),
        LabelledSeries("unknown", "out", [(MINUTE, 10000 * 8 / 60), (MINUTE + 60, 600 * 8 / 60)], 10600),
        LabelledSeries("globex", "out", [(MINUTE, 300 * 8 / 60)], 300),
    ]
    assert [s.label for s in customer_throughput(reader.query, step_s=60, limit=1, **WINDOW)] == ["acme"]
    narrowed = customer_throughput(reader.query, step_s=120, exporter="192.0.2.2", interface=8, **WINDOW)
    assert narrowed == [LabelledSeries("globex", "out", [(MINUTE // 120 * 120, 300 * 8 / 120)], 300)]
    assert customer_throughput(reader.query, step_s=60, customer="unknown", **WINDOW)[0].bytes == 10600


def test_interface_throughput_per_exporter_and_index(reader: StoreReader) -> None:
    assert [(s.label, s.direction, s.bytes) for s in interface_throughput(reader.query, step_s=60, **WINDOW)] == [
        ("192.0.2.1:1", "in", 10600),
        ("192.0.2.1:2", "out", 10600),
        ("192.0.2.2:7", "in", 300),
        ("192.0.2.2:8", "out", 300),
    ]
    assert interface_throughput(reader.query, step_s=60, customer="globex", **WINDOW) == [
        LabelledSeries("192.0.2.2:8", "out", [(MINUTE, 300 * 8 / 60)], 300)
    ]
    limited = interface_throughput(reader.query, step_s=60, limit=2, **WINDOW)
    assert [s.label for s in limited] == ["192.0.2.1:1", "192.0.2.1:2"]


def test_top_customers_from_the_rollup_match_the_flows(reader: StoreReader) -> None:
    expected = [TopTalker("acme", 10900, 24, 3)]
    assert top_customers(reader.query, limit=10, **WINDOW) == expected
    assert top_talkers(reader.query, by="customer", limit=10, **WINDOW) == expected


def test_flow_choices_name_customers_and_interfaces(reader: StoreReader) -> None:
    assert flow_choices(reader.query, **WINDOW) == FlowChoices(
        customers=["acme", "globex", "unknown"],
        interfaces=["192.0.2.1:1", "192.0.2.1:2", "192.0.2.2:7", "192.0.2.2:8"],
    )
    assert flow_choices(reader.query, start_s=MINUTE + 300, end_s=MINUTE + 400) == FlowChoices([], [])


def port_flows(customer: str, exporter: str, ports: dict[int, int], protocol: int = 6) -> list[dict[str, Any]]:
    """`count` flows to each destination port, from `customer` through `exporter`, in two minutes."""
    return [
        {"time": MINUTE + 60 * (n % 2) + 5, "src": "10.1.0.5", "dst": "203.0.113.9", "exporter": exporter,
         "SrcCustomer": customer, "DstPort": port, "Protocol": protocol}
        for port, count in ports.items()
        for n in range(count)
    ]  # fmt: skip


def test_top_ports_per_customer_and_exporter_count_tcp_and_udp_flows_busiest_first(
    chdb_client: Client, database: str
) -> None:
    migrate(chdb_client, DdlContext(database=database))
    flows = [
        # acme through two exporters: six TCP ports, of which the five busiest are shown.
        *port_flows("acme", "192.0.2.1", {443: 7, 22: 3, 8080: 5, 80: 6, 5432: 2}),
        *port_flows("acme", "192.0.2.2", {443: 2, 9000: 1}),
        # UDP counts; ICMP (no ports) does not, however many flows.
        *port_flows("globex", "192.0.2.2", {53: 4, 123: 3}, protocol=17),
        *port_flows("globex", "192.0.2.2", {0: 9}, protocol=1),
    ]
    StoreWriter(chdb_client, database).insert("flows", flow_rows(flows))
    health = network_health(StoreReader(chdb_client, database).query, **WINDOW)
    # "unknown" is every flow's destination: it sent nothing, so it has no ports.
    assert {c.customer: c.top_dst_ports for c in health.customers} == {
        "acme": [443, 80, 8080, 22, 5432],
        "globex": [53, 123],
        "unknown": [],
    }
    assert [(e.exporter, e.top_dst_ports) for e in health.exporters] == [
        ("192.0.2.1", [443, 80, 8080, 22, 5432]),
        ("192.0.2.2", [53, 123, 443, 9000]),
    ]
    # A window holding neither minute has neither customers nor exporters.
    later = network_health(StoreReader(chdb_client, database).query, start_s=MINUTE + 300, end_s=MINUTE + 400)
    assert (later.customers, later.exporters) == ([], [])


def test_health_without_exporter_ports_leaves_only_those_out(reader: StoreReader) -> None:
    full = network_health(reader.query, **WINDOW)
    lighter = network_health(reader.query, exporter_ports=False, **WINDOW)
    assert [e.top_dst_ports for e in full.exporters] == [[443], [443]]
    assert [e.top_dst_ports for e in lighter.exporters] == [[], []]
    assert lighter.customers == full.customers
    assert [replace(e, top_dst_ports=[]) for e in full.exporters] == lighter.exporters
