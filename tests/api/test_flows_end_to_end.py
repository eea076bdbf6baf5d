"""Flows exported by real softflowd land in Vigil exactly as the reference collector (nfcapd + nfdump)
stores them, tagged by the prefix file, and read back through the network API."""

from __future__ import annotations

import shutil
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningVigil, vigil_with_prefixes
from tests.netflow_packets import softflowd_datagrams, write_flows_pcap
from tests.nfdump import nfdump_flows

pytestmark = pytest.mark.skipif(
    shutil.which("softflowd") is None or shutil.which("nfcapd") is None,
    reason="softflowd and nfdump are needed (scripts/test installs them from Debian)",
)

PREFIXES = """cidr,customer,site
10.0.0.0/24,acme,paris
10.0.1.0/24,acme,berlin
10.0.2.0/24,globex,lyon
"""


@pytest.fixture
def flows_vigil(vigil_settings: dict[str, Any], tmp_path: Path) -> Iterator[RunningVigil]:
    yield from vigil_with_prefixes(vigil_settings, tmp_path, PREFIXES)


@pytest.fixture(scope="module")
def pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pcap") / "flows.pcap"
    write_flows_pcap(path, int(time.time()) - 120)
    return path


def send(vigil: RunningVigil, port: int, datagrams: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for datagram in datagrams:
            sender.sendto(datagram, ("127.0.0.1", port))


def stored_pairs(vigil: RunningVigil, expected_flows: int, timeout_s: float = 15.0) -> list[dict[str, Any]]:
    """Top talkers by pair once `expected_flows` flows are stored (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while True:
        vigil.flush()
        pairs: list[dict[str, Any]] = httpx.get(
            f"{vigil.api}/api/v1/network/top-talkers", params={"by": "pair", "limit": 100}
        ).json()
        if sum(p["flows"] for p in pairs) >= expected_flows or time.monotonic() > deadline:
            return pairs
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("version", "extra", "port"),
    [(5, (), "netflow"), (9, ("-A", "milli"), "netflow"), (10, ("-A", "milli"), "ipfix"), (9, (), "netflow")],
    ids=["v5", "v9", "ipfix", "v9-uptime-times"],
)
def test_softflowd_flows_match_nfdump_per_pair(
    flows_vigil: RunningVigil, pcap: Path, version: int, extra: tuple[str, ...], port: str
) -> None:
    datagrams = softflowd_datagrams(pcap, version, *extra)
    reference = nfdump_flows(datagrams)
    assert (len(reference), sum(f.packets for f in reference), sum(f.bytes for f in reference)) == (12, 112, 48888)
    send(flows_vigil, getattr(flows_vigil.ports, port), datagrams)
    pairs = stored_pairs(flows_vigil, 12)
    expected: Counter[tuple[str, str]] = Counter()
    packets: Counter[tuple[str, str]] = Counter()
    flows: Counter[tuple[str, str]] = Counter()
    for f in reference:
        expected[(f.src, f.dst)] += f.bytes
        packets[(f.src, f.dst)] += f.packets
        flows[(f.src, f.dst)] += 1
    assert {p["key"]: (p["bytes"], p["packets"], p["flows"]) for p in pairs} == {
        f"{src} -> {dst}": (expected[(src, dst)], packets[(src, dst)], flows[(src, dst)]) for src, dst in expected
    }


def test_flows_are_tagged_by_customer_and_the_exporter_is_reported(flows_vigil: RunningVigil, pcap: Path) -> None:
    datagrams = softflowd_datagrams(pcap, 10, "-A", "milli")
    send(flows_vigil, flows_vigil.ports.ipfix, datagrams)
    stored_pairs(flows_vigil, 12)
    by_customer = httpx.get(f"{flows_vigil.api}/api/v1/network/top-talkers", params={"by": "customer"}).json()
    # acme: 4 TCP clients (4 x 1,480 B) and their server (4 x 10,480 B) and the ICMP echo (28 B); globex: DNS.
    assert by_customer == [
        {"key": "acme", "bytes": 4 * 1480 + 4 * 10480 + 28, "packets": 4 * 12 + 4 * 12 + 1, "flows": 9},
        {"key": "globex", "bytes": 3 * 340, "packets": 15, "flows": 3},
    ]
    deadline = time.monotonic() + 15
    while True:  # the receiver reports exporters every few seconds
        health = httpx.get(f"{flows_vigil.api}/api/v1/network/health").json()
        if (health["exporters"] and health["exporters"][0]["packets"]) or time.monotonic() > deadline:
            break
        flows_vigil.flush()
        time.sleep(0.2)
    [exporter] = health["exporters"]
    assert (exporter["exporter"], exporter["versions"], exporter["packets"], exporter["malformed"]) == (
        "127.0.0.1",
        [10],
        len(datagrams),
        {},
    )
    assert exporter["templates"]  # softflowd's IPv4 and options templates
    globex = next(c for c in health["customers"] if c["customer"] == "globex")
    assert globex["top_dst_ports"] == [53]
    acme = next(c for c in health["customers"] if c["customer"] == "acme")
    # Every TCP flow completed its handshake (SYN and ACK seen) and none was reset.
    assert (acme["syn_no_ack_share"], acme["rst_share"]) == (0.0, 0.0)


def test_garbage_and_unknown_templates_are_counted_and_good_packets_kept(flows_vigil: RunningVigil, pcap: Path) -> None:
    datagrams = softflowd_datagrams(pcap, 5)
    send(flows_vigil, flows_vigil.ports.netflow, [b"\x00\x09garbage", b"", b"\x00\x05\x00\x01", *datagrams])
    pairs = stored_pairs(flows_vigil, 12)
    assert sum(p["flows"] for p in pairs) == 12
    deadline = time.monotonic() + 15
    while True:
        health = httpx.get(f"{flows_vigil.api}/api/v1/network/health").json()
        if any(e["malformed"] for e in health["exporters"]) or time.monotonic() > deadline:
            break
        flows_vigil.flush()
        time.sleep(0.2)
    # Three truncated packets (an empty one, a v9 and a v5 header cut short), each under its version.
    assert sorted((e["versions"], e["malformed"]) for e in health["exporters"]) == [([0, 5, 9], {"truncated": 3})]
