"""Network anomalies over hours of generated flows in real chDB: exact findings, and none on steady traffic.

Flows are written straight into `flows` (the rollup view fills `flows_1m`), as the collector's
writer would, and the runner is driven over them with a fake clock.
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.flow_rows import exporter_rows
from vigil.detectors.network import NetworkAnomalies, customer_key, exporter_key, interface_key
from vigil.detectors.network_anomaly import format_bits
from vigil.detectors.runner import DetectorRunner
from vigil.store.client import Client
from vigil.store.findings import Finding, FindingQuery, FindingStore
from vigil.store.migrate import migrate
from vigil.store.schema import FLOWS_ARROW_SCHEMA, DdlContext
from vigil.store.write import StoreWriter

S = 1_000_000_000  # ns per second
SYN_ONLY, ESTABLISHED = 0x02, 0x1B  # SYN without ACK (a failed handshake); SYN, ACK, PSH, FIN
EDGE, BRANCH, SPARSE = "192.0.2.1", "192.0.2.9", "192.0.2.7"
MBIT_MINUTE = 1e6 / 8 * 60  # bytes in a minute at 1 Mbit/s

MINUTES = 300
EXPORTER_STOP, EXPORTER_RESUME = 150, 170  # BRANCH sends nothing in between
SPIKE_START, SPIKE_END = 200, 220  # interface 3 of EDGE carries an extra 15 Mbit/s of NTP
SURGE = 240  # SYNs to globex on port 8443 go unanswered from here on
DROP = 270  # acme's traffic falls to 5%


def _address(text: str) -> bytes:
    parsed = ipaddress.ip_address(text)
    return (ipaddress.IPv6Address(f"::ffff:{parsed}") if parsed.version == 4 else parsed).packed


@dataclass
class Flows:
    """Columns of `flows` rows, built a group of flows at a time."""

    rng: np.random.Generator
    columns: dict[str, list[Any]] = field(default_factory=dict)

    def add(
        self,
        t: float,
        count: int,
        *,
        total_bytes: float,
        exporter: str = EDGE,
        interfaces: tuple[int, int] = (1, 2),
        customers: tuple[str, str] = ("", ""),
        protocol: int = 6,
        failed_share: float = 0.0,
        ports: tuple[int, ...] = (443, 80, 22, 8080),
        last_at: float | None = None,
    ) -> None:
        """`count` flows received in the minute starting at `t`, sharing `total_bytes` unevenly;
        each TCP flow's handshake fails with probability `failed_share`."""
        if count <= 0:
            return
        weights = self.rng.lognormal(0.0, 0.5, count)
        nbytes = np.maximum(1, (total_bytes * weights / weights.sum()).astype(np.int64))
        received = ((t + self.rng.uniform(0, 50, count)) * S).astype(np.int64)
        if last_at is not None:
            received[-1] = int(last_at * S)
        failed = self.rng.random(count) < failed_share
        flags = np.where(failed, SYN_ONLY, ESTABLISHED) if protocol == 6 else np.zeros(count)
        src_customer, dst_customer = customers
        group = {
            "TimeReceived": received,
            "FlowStart": received - S,
            "FlowEnd": received,
            "Exporter": [_address(exporter)] * count,
            "FlowVersion": np.full(count, 9),
            "ObservationDomain": np.zeros(count),
            "SrcAddr": [_address("10.1.0.5" if src_customer else "198.51.100.7")] * count,
            "DstAddr": [_address("10.2.0.9" if dst_customer else "203.0.113.9")] * count,
            "SrcPort": self.rng.integers(1024, 65535, count),
            "DstPort": self.rng.choice(ports, count),
            "Protocol": np.full(count, protocol),
            "TcpFlags": flags,
            "Tos": np.zeros(count),
            "InputInterface": np.full(count, interfaces[0]),
            "OutputInterface": np.full(count, interfaces[1]),
            "Bytes": nbytes,
            "Packets": np.maximum(1, nbytes // 1000),
            "SamplingRate": np.ones(count),
            "SrcAs": np.zeros(count),
            "DstAs": np.zeros(count),
            "SrcPrefix": ["10.1.0.0/16" if src_customer else ""] * count,
            "SrcCustomer": [src_customer] * count,
            "SrcSite": [""] * count,
            "DstPrefix": ["10.2.0.0/16" if dst_customer else ""] * count,
            "DstCustomer": [dst_customer] * count,
            "DstSite": [""] * count,
        }
        for name, values in group.items():
            self.columns.setdefault(name, []).append(values)

    def table(self) -> pa.Table:
        arrays = []
        for schema_field in FLOWS_ARROW_SCHEMA:
            parts = self.columns[schema_field.name]
            if isinstance(parts[0], list):
                arrays.append(pa.array([v for part in parts for v in part], schema_field.type))
            elif pa.types.is_timestamp(schema_field.type):
                arrays.append(pa.array(np.concatenate(parts), pa.int64()).cast(schema_field.type))
            else:
                arrays.append(pa.array(np.concatenate(parts).astype(np.int64)).cast(schema_field.type))
        return pa.Table.from_arrays(arrays, schema=FLOWS_ARROW_SCHEMA)


@dataclass
class Store:
    client: Client
    database: str
    start: float  # minute 0

    def minute(self, m: float) -> float:
        return self.start + 60 * m

    def runner(self, clock: list[float]) -> DetectorRunner:
        family = NetworkAnomalies(self.client, self.database)
        return DetectorRunner(family, FindingStore(self.client, self.database), grace=0.0, clock=lambda: clock[0])

    def findings(self) -> dict[str, Finding]:
        found = FindingStore(self.client, self.database).query(FindingQuery(since=0))
        assert len({f.series for f in found}) == len(found), "one finding per series"
        return {f.series: f for f in found}


def _store(client: Client, minutes: int) -> Store:
    database = f"t_{uuid.uuid4().hex[:12]}"
    migrate(client, DdlContext(database=database))
    # Ending two minutes ago, so every bucket is closed and inside the rollups' retention.
    return Store(client, database, start=(int(time.time()) // 60 - 2 - minutes) * 60.0)


@dataclass
class Incidents:
    store: Store
    at_stop: dict[str, Finding]  # findings ten minutes into BRANCH's silence
    final: dict[str, Finding]
    branch_last_flow: float


@pytest.fixture(scope="module")
def incidents(chdb_client: Client) -> Iterator[Incidents]:
    """Five hours of an edge router and a branch router, with four incidents (see the constants)."""
    store = _store(chdb_client, MINUTES)
    rng = np.random.default_rng(11)
    flows = Flows(rng)
    last_flow = store.minute(EXPORTER_STOP - 1) + 40  # BRANCH's, just before its silence
    for m in range(MINUTES):
        t = store.minute(m)
        noise = float(rng.normal(1.0, 0.05))
        # The internet through the edge: busy, and with the usual 30% of scans that get no answer.
        flows.add(t, 300, total_bytes=100 * MBIT_MINUTE * noise, failed_share=0.3)
        acme = 0.05 if m >= DROP else 1.0
        flows.add(t, 20, total_bytes=8 * MBIT_MINUTE * acme * noise, customers=("acme", ""), failed_share=0.01)
        flows.add(t, 100, total_bytes=20 * MBIT_MINUTE * noise, customers=("", "globex"), failed_share=0.01)
        if m >= SURGE:
            flows.add(t, 70, total_bytes=70 * 60, customers=("", "globex"), failed_share=1.0, ports=(8443,))
        flows.add(t, 30, total_bytes=5 * MBIT_MINUTE * noise, interfaces=(3, 2), protocol=17)
        if SPIKE_START <= m < SPIKE_END:
            flows.add(t, 40, total_bytes=15 * MBIT_MINUTE, interfaces=(3, 2), protocol=17, ports=(123,))
        if not EXPORTER_STOP <= m < EXPORTER_RESUME:
            flows.add(
                t,
                30,
                total_bytes=4 * MBIT_MINUTE * noise,
                exporter=BRANCH,
                interfaces=(10, 11),
                customers=("initech", ""),
                failed_share=0.01,
                last_at=last_flow if m == EXPORTER_STOP - 1 else None,
            )
    writer = StoreWriter(chdb_client, store.database)
    writer.insert("flows", flows.table())
    # The receiver's view of BRANCH a few seconds into its silence: its last packet.
    writer.insert(
        "flow_exporters", exporter_rows([{"time": last_flow + 5, "exporter": BRANCH, "LastSeen": int(last_flow * S)}])
    )

    # A backfill of the first two hours, then minute by minute as `vigil serve` runs, through the
    # silence and past the resumption, then the rest in one go.
    clock = [store.minute(EXPORTER_STOP - 30)]
    runner = store.runner(clock)
    runner.reset(store.start)
    runner.run()
    at_stop: dict[str, Finding] = {}
    for m in range(EXPORTER_STOP - 29, EXPORTER_RESUME + 3):
        clock[0] = store.minute(m)
        assert runner.run() == 1
        if m == EXPORTER_STOP + 10:
            at_stop = store.findings()
    clock[0] = store.minute(MINUTES)
    runner.run()
    yield Incidents(store, at_stop, store.findings(), last_flow)


def test_a_customer_whose_traffic_drops_to_5_percent_is_one_open_finding(incidents: Incidents) -> None:
    drop = incidents.final[customer_key("acme", "in", "bits_per_second")]
    assert (drop.kind, drop.service, drop.operation, drop.signal, drop.unit) == (
        "network",
        "acme",
        "in",
        "bits_per_second",
        "bits/s",
    )
    assert drop.status == "open"
    assert abs(drop.started_at - incidents.store.minute(DROP)) <= 120
    assert drop.baseline == pytest.approx(8e6, rel=0.15)
    assert drop.observed == pytest.approx(0.4e6, rel=0.3)
    assert drop.severity == "critical"
    assert drop.summary.startswith("Traffic sent by customer acme (in) dropped from ")
    assert f"to {format_bits(drop.observed)} (-9" in drop.summary


def test_an_interface_spike_is_one_finding_that_closes_with_its_evidence(incidents: Incidents) -> None:
    spike = incidents.final[interface_key(EDGE, 3, "in")]
    assert (spike.service, spike.operation, spike.signal) == (f"exporter {EDGE}", "interface 3 in", "bits_per_second")
    assert abs(spike.started_at - incidents.store.minute(SPIKE_START)) <= 120
    # Closed after ten minutes back near the baseline.
    assert spike.status == "closed"
    assert spike.ended_at is not None
    assert incidents.store.minute(SPIKE_END) <= spike.ended_at <= incidents.store.minute(SPIKE_END + 11)
    assert spike.observed == pytest.approx(20e6, rel=0.15)
    assert spike.summary.startswith(f"Traffic entering interface 3 of exporter {EDGE} (in) rose from ")
    assert [(a.attribute, a.value) for a in spike.top_attributes] == [("destination.port", "123")]
    assert spike.top_attributes[0].baseline_share == 0.0


def test_a_failed_handshake_surge_is_one_finding_naming_the_port(incidents: Incidents) -> None:
    surge = incidents.final[customer_key("globex", "out", "failed_handshakes")]
    assert (surge.service, surge.operation, surge.unit, surge.status) == ("globex", "out", "ratio", "open")
    assert incidents.store.minute(SURGE - 2) <= surge.started_at <= incidents.store.minute(SURGE + 1)
    assert surge.baseline < 0.03
    assert surge.observed == pytest.approx(71 / 170, abs=0.05)
    assert surge.summary.startswith("Failed TCP handshakes (SYN without ACK) to customer globex (out) rose to ")
    assert [(a.attribute, a.value) for a in surge.top_attributes] == [("destination.port", "8443")]


def test_an_exporter_that_stops_is_one_finding_that_closes_when_it_resumes(incidents: Incidents) -> None:
    key = exporter_key(BRANCH)
    silent = incidents.at_stop[key]
    assert (silent.service, silent.signal, silent.unit, silent.status) == (f"exporter {BRANCH}", "silent", "s", "open")
    assert silent.started_at == incidents.store.minute(EXPORTER_STOP)
    onset = time.strftime("%H:%M UTC", time.gmtime(silent.started_at))
    last = time.strftime("%H:%M:%S UTC", time.gmtime(incidents.branch_last_flow))
    assert silent.summary == (
        f"Exporter {BRANCH} silent since {onset} (last flow {last}); it usually sends flows every minute."
    )
    # Only the silence: not the branch's interfaces, nor initech whose traffic went through it.
    assert list(incidents.at_stop) == [key]

    closed = incidents.final[key]
    assert (closed.id, closed.status) == (silent.id, "closed")
    assert closed.ended_at == incidents.store.minute(EXPORTER_RESUME)


def test_nothing_else_is_found(incidents: Incidents) -> None:
    assert sorted(incidents.final) == sorted(
        [
            customer_key("acme", "in", "bits_per_second"),
            interface_key(EDGE, 3, "in"),
            customer_key("globex", "out", "failed_handshakes"),
            exporter_key(BRANCH),
        ]
    )


def test_steady_noisy_traffic_for_hours_finds_nothing(chdb_client: Client) -> None:
    minutes = 240
    store = _store(chdb_client, minutes)
    rng = np.random.default_rng(5)
    flows = Flows(rng)
    for m in range(minutes):
        t = store.minute(m)
        # Minute-to-minute swings of 15%, uneven flow sizes, 2% failed handshakes, Poisson flow counts.
        flows.add(t, int(rng.poisson(150)), total_bytes=50 * MBIT_MINUTE * rng.normal(1, 0.15), failed_share=0.02)
        for customer, mbit in (("acme", 3.0), ("globex", 12.0), ("", 1.0)):
            flows.add(
                t,
                int(rng.poisson(25)),
                total_bytes=mbit * MBIT_MINUTE * rng.normal(1, 0.15),
                customers=(customer, "initech"),
                failed_share=0.02,
            )
        flows.add(
            t,
            int(rng.poisson(20)),
            total_bytes=2 * MBIT_MINUTE * rng.normal(1, 0.15),
            exporter=BRANCH,
            interfaces=(5, 6),
        )
        # An exporter of a quiet site: flows in about half of the minutes, in irregular gaps.
        if rng.random() < 0.5:
            flows.add(t, 3, total_bytes=0.5 * MBIT_MINUTE, exporter=SPARSE, customers=("hooli", ""), protocol=17)
    StoreWriter(chdb_client, store.database).insert("flows", flows.table())

    runner = store.runner([store.minute(minutes)])
    runner.reset(store.start)
    assert runner.run() == minutes
    assert runner.series_count > 15
    assert store.findings() == {}
