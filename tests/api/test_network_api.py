"""The network health API over flows written straight into the store: exact figures."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.conftest import RunningVigil
from tests.flow_rows import exporter_rows, flow_rows
from vigil.store.client import Client
from vigil.store.write import StoreWriter

# Inside the previous whole minute, so every flow lands in one rollup minute of the last hour.
MINUTE = int(time.time()) // 60 * 60 - 60
SYN, RST, ACK = 0x02, 0x04, 0x10

FLOWS: list[dict[str, Any]] = [
    # acme's web client to a server, sampled 1 in 10: 10 exported flows' worth of bytes.
    {"time": MINUTE + 1, "src": "10.1.0.5", "dst": "203.0.113.9", "Bytes": 5000, "Packets": 50, "SamplingRate": 10,
     "SrcCustomer": "acme", "TcpFlags": SYN | ACK, "DstPort": 443},
    # acme: a failed handshake (SYN, no ACK) and a reset.
    {"time": MINUTE + 2, "src": "10.1.0.5", "dst": "203.0.113.9", "Bytes": 60, "Packets": 1,
     "SrcCustomer": "acme", "TcpFlags": SYN, "DstPort": 22},
    {"time": MINUTE + 3, "src": "10.1.0.6", "dst": "203.0.113.10", "Bytes": 40, "Packets": 1,
     "SrcCustomer": "acme", "TcpFlags": RST | ACK, "DstPort": 443},
    # globex receives DNS from an unknown source, through another exporter and interface.
    {"time": MINUTE + 4, "src": "198.51.100.1", "dst": "10.2.0.1", "Bytes": 300, "Packets": 3, "Protocol": 17,
     "TcpFlags": 0, "DstPort": 53, "DstCustomer": "globex", "exporter": "192.0.2.2", "InputInterface": 7,
     "OutputInterface": 8},
    {"time": MINUTE + 5, "src": "2001:db8::1", "dst": "2001:db8::2", "Bytes": 100, "Packets": 1, "Protocol": 17,
     "TcpFlags": 0, "DstPort": 53},
]  # fmt: skip


@pytest.fixture
def network(vigil_server: RunningVigil, chdb_client: Client, database: str) -> RunningVigil:
    writer = StoreWriter(chdb_client, database)
    writer.insert("flows", flow_rows(FLOWS))
    writer.insert(
        "flow_exporters",
        exporter_rows(
            [
                {"time": MINUTE + 6, "exporter": "192.0.2.1", "Packets": 4, "Templates": [1024, 256],
                 "Malformed": [("truncated", 1)], "SamplingRate": 10, "LastSeen": (MINUTE + 5) * 10**9},
                {"time": MINUTE + 1, "exporter": "192.0.2.1", "Packets": 1},  # an older report: superseded
                {"time": MINUTE + 6, "exporter": "192.0.2.2", "FlowVersion": 10, "Packets": 1, "Templates": [256]},
            ]
        ),
    )  # fmt: skip
    return vigil_server


def get(vigil: RunningVigil, path: str, **params: Any) -> Any:
    response = httpx.get(f"{vigil.api}/api/v1/network/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_top_talkers_by_source_destination_customer_and_pair(network: RunningVigil) -> None:
    assert get(network, "top-talkers", by="src", limit=2) == [
        {"key": "10.1.0.5", "bytes": 50060, "packets": 501, "flows": 2},
        {"key": "198.51.100.1", "bytes": 300, "packets": 3, "flows": 1},
    ]
    assert [t["key"] for t in get(network, "top-talkers", by="dst")] == [
        "203.0.113.9",
        "10.2.0.1",
        "2001:db8::2",
        "203.0.113.10",
    ]
    assert get(network, "top-talkers", by="customer") == [
        {"key": "acme", "bytes": 50100, "packets": 502, "flows": 3},
        {"key": "unknown", "bytes": 400, "packets": 4, "flows": 2},
    ]
    assert get(network, "top-talkers", by="pair", limit=1) == [
        {"key": "10.1.0.5 -> 203.0.113.9", "bytes": 50060, "packets": 501, "flows": 2}
    ]


def test_throughput_per_customer_interface_and_network(network: RunningVigil) -> None:
    acme = get(network, "throughput", customer="acme", step="60s")
    assert acme["series"] == [
        {"direction": "in", "bits_per_s": [[MINUTE, 50100 * 8 / 60]], "packets_per_s": [[MINUTE, 502 / 60]]}
    ]
    globex = get(network, "throughput", customer="globex")
    assert [(s["direction"], s["bits_per_s"]) for s in globex["series"]] == [("out", [[MINUTE, 300 * 8 / 60]])]
    interface = get(network, "throughput", interface=7, exporter="192.0.2.2")
    assert [(s["direction"], s["packets_per_s"]) for s in interface["series"]] == [("in", [[MINUTE, 3 / 60]])]
    everything = get(network, "throughput", step="5m")
    assert everything["series"][0]["bits_per_s"] == [[MINUTE // 300 * 300, 50500 * 8 / 300]]


def test_health_per_customer_and_exporter(network: RunningVigil) -> None:
    health = get(network, "health", since="15m")
    customers = {c["customer"]: c for c in health["customers"]}
    # Ordered by traffic: acme's servers are outside every prefix, so "unknown" received the most.
    assert [c["customer"] for c in health["customers"]] == ["unknown", "acme", "globex"]
    acme = customers["acme"]
    assert acme["sent_bits_per_s"] == pytest.approx(50100 * 8 / 900, abs=0.001)
    assert acme["received_bits_per_s"] == 0
    assert acme["flows_per_s"] == pytest.approx(3 / 900, abs=0.001)
    assert (acme["syn_no_ack_share"], acme["rst_share"]) == (
        pytest.approx(1 / 3, abs=1e-4),
        pytest.approx(1 / 3, abs=1e-4),
    )
    assert acme["top_dst_ports"] == [443, 22]
    assert customers["globex"]["received_bits_per_s"] == pytest.approx(300 * 8 / 900, abs=0.001)
    first, second = health["exporters"]
    assert (first["exporter"], first["packets"], first["templates"], first["malformed"]) == (
        "192.0.2.1",
        4,
        [256, 1024],
        {"truncated": 1},
    )
    assert (first["sampling_rate"], first["last_seen_unix_nano"], first["top_dst_ports"]) == (
        10,
        (MINUTE + 5) * 10**9,
        [443, 22, 53],
    )
    assert (second["exporter"], second["versions"], second["templates"]) == ("192.0.2.2", [10], [256])


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("top-talkers", {"by": "port"}, "by"),
        ("top-talkers", {"limit": 0}, "limit"),
        ("throughput", {"step": "30s"}, "step"),
        ("throughput", {"step": "soon"}, "step"),
        ("throughput", {"exporter": "router-1"}, "exporter"),
        ("throughput", {"interface": -1}, "interface"),
        ("health", {"since": "forever"}, "since"),
    ],
)
def test_bad_parameters_get_422_naming_the_parameter(
    network: RunningVigil, path: str, params: dict[str, Any], parameter: str
) -> None:
    response = httpx.get(f"{network.api}/api/v1/network/{path}", params=params)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["query", parameter]]
