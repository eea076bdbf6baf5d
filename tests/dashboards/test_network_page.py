"""The network page in a real browser, over NetFlow v5 and IPFIX packets sent over UDP to a running
Vigil (two exporters: 127.0.0.1 and 127.0.0.2), with customers from a prefix file."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from tests.conftest import RunningVigil, vigil_with_prefixes
from tests.dashboards.pages import chart_spec, table_rows
from tests.netflow_packets import SOFTFLOWD_V4, V5Record, data_set, ipfix_packet, template_set, v5_packet

PREFIXES = """cidr,customer,site
10.0.0.0/24,acme,paris
10.0.2.0/24,globex,lyon
"""
SYN, RST, ACK = 0x02, 0x04, 0x10
# Router 127.0.0.1 (NetFlow v5): acme's clients on interface 1 to servers out of interface 2, one of
# them a handshake that never completed and one reset; DNS from the internet to globex, 7 to 8.
V5_FLOWS = [
    V5Record("10.0.0.5", "203.0.113.9", 40001, 443, 6, SYN | ACK, packets=4000, bytes=5_000_000, input=1, output=2),
    V5Record("10.0.0.5", "203.0.113.9", 40002, 22, 6, SYN, packets=1, bytes=60, input=1, output=2),
    V5Record("10.0.0.6", "203.0.113.10", 40003, 443, 6, RST | ACK, packets=1, bytes=40, input=1, output=2),
    V5Record("198.51.100.1", "10.0.2.1", 5353, 53, 17, 0, packets=300, bytes=300_000, input=7, output=8),
]
# Router 127.0.0.2 (IPFIX, softflowd's template): globex's web client, interface 3 to 4.
IPFIX_FLOW = ["10.0.2.7", "203.0.113.50", 0, 0, 2_000_000, 1500, 3, 4, 0, 2, 40004, 80, 6, 0x1B, 4, 0]


def send_from(source: str, port: int, datagrams: list[bytes]) -> None:
    """UDP datagrams from `source` (any 127/8 address is this host), so each source is an exporter."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind((source, 0))
        for datagram in datagrams:
            sender.sendto(datagram, ("127.0.0.1", port))


def wait_for(vigil: RunningVigil, done: Any, timeout_s: float = 20.0) -> None:
    """Until `done(health)` holds for the network health API (flows and exporter reports are asynchronous)."""
    deadline = time.monotonic() + timeout_s
    while True:
        vigil.flush()
        health = httpx.get(f"{vigil.api}/api/v1/network/health", params={"since": "1h"}).json()
        if done(health):
            return
        assert time.monotonic() < deadline, f"not reached in {timeout_s}s: {health}"
        time.sleep(0.2)


@pytest.fixture
def network(vigil_settings: dict[str, Any], tmp_path: Path) -> Iterator[RunningVigil]:
    servers = vigil_with_prefixes(vigil_settings, tmp_path, PREFIXES)
    running = next(servers)
    try:
        now = int(time.time())
        send_from("127.0.0.1", running.ports.netflow, [v5_packet(V5_FLOWS, uptime_ms=100_000, unix_secs=now)])
        values = [*IPFIX_FLOW[:2], now * 1000 - 500, now * 1000, *IPFIX_FLOW[4:]]
        send_from(
            "127.0.0.2",
            running.ports.ipfix,
            [
                ipfix_packet([template_set(10, [(1024, SOFTFLOWD_V4)])], export_time=now),
                ipfix_packet([data_set(1024, SOFTFLOWD_V4, [values])], export_time=now, sequence=0),
            ],
        )
        wait_for(
            running,
            lambda health: (
                sum(e["bits_per_s"] > 0 for e in health["exporters"]) == 2
                and all(e["packets"] for e in health["exporters"])
            ),
        )
        yield running
    finally:
        servers.close()  # stops Vigil


def test_top_talkers_by_source_destination_customer_and_pair(network: RunningVigil, page: Page) -> None:
    page.goto(f"{network.api}/network?since=1h")
    assert page.locator("#talker-tabs a.active").inner_text() == "Customers"
    assert table_rows(page, "#talkers") == [
        ["acme", "5,000,100", "4,002", "3"],
        ["globex", "2,000,000", "1,500", "1"],
        ["unknown", "300,000", "300", "1"],
    ]
    page.click("#talker-tabs >> text=Sources")
    page.wait_for_url(f"{network.api}/network?since=1h&talkers=src")
    assert table_rows(page, "#talkers") == [
        ["10.0.0.5", "5,000,060", "4,001", "2"],
        ["10.0.2.7", "2,000,000", "1,500", "1"],
        ["198.51.100.1", "300,000", "300", "1"],
        ["10.0.0.6", "40", "1", "1"],
    ]
    page.click("#talker-tabs >> text=Destinations")
    page.wait_for_url(f"{network.api}/network?since=1h&talkers=dst")
    assert [r[0] for r in table_rows(page, "#talkers")] == ["203.0.113.9", "203.0.113.50", "10.0.2.1", "203.0.113.10"]
    page.click("#talker-tabs >> text=Pairs")
    page.wait_for_url(f"{network.api}/network?since=1h&talkers=pair")
    assert [r[0] for r in table_rows(page, "#talkers")] == [
        "10.0.0.5 -> 203.0.113.9",
        "10.0.2.7 -> 203.0.113.50",
        "198.51.100.1 -> 10.0.2.1",
        "10.0.0.6 -> 203.0.113.10",
    ]
    # Sorting is in the page: fewest packets first.
    page.click("#talkers th:has-text('Packets')")
    assert [r[2] for r in table_rows(page, "#talkers")] == ["1", "300", "1,500", "4,001"]


def bytes_per_line(spec: dict[str, Any]) -> dict[str, float]:
    """Each line's bytes over the chart: bits/s per minute times 60 s over 8."""
    step = 60
    return {trace["name"]: sum(trace["y"]) * step / 8 for trace in spec["data"]}


def test_throughput_charts_per_customer_and_interface_narrow_by_filter(network: RunningVigil, page: Page) -> None:
    page.goto(f"{network.api}/network?since=1h")
    assert bytes_per_line(chart_spec(page, "customer-throughput")) == {
        "unknown sent": pytest.approx(300_000),
        "unknown received": pytest.approx(7_000_100),
        "acme sent": pytest.approx(5_000_100),
        "globex sent": pytest.approx(2_000_000),
        "globex received": pytest.approx(300_000),
    }
    # Five busiest interfaces of six: 127.0.0.1:8 carried as little as :7 and sorts after it.
    assert bytes_per_line(chart_spec(page, "interface-throughput")) == {
        "127.0.0.1:1 in": pytest.approx(5_000_100),
        "127.0.0.1:2 out": pytest.approx(5_000_100),
        "127.0.0.2:3 in": pytest.approx(2_000_000),
        "127.0.0.2:4 out": pytest.approx(2_000_000),
        "127.0.0.1:7 in": pytest.approx(300_000),
    }
    spec = chart_spec(page, "customer-throughput")
    assert {len(trace["x"]) for trace in spec["data"]} == {61}  # every minute of the hour, zeros included

    page.fill("input[name=customer]", "globex")
    page.click("#network-filters button[type=submit]")
    page.wait_for_url(f"{network.api}/network?since=1h&talkers=customer&customer=globex&interface=")
    assert bytes_per_line(chart_spec(page, "customer-throughput")) == {
        "globex sent": pytest.approx(2_000_000),
        "globex received": pytest.approx(300_000),
    }
    assert bytes_per_line(chart_spec(page, "interface-throughput")) == {
        "127.0.0.2:3 in": pytest.approx(2_000_000),
        "127.0.0.1:8 out": pytest.approx(300_000),
    }
    # The tabs keep the filters.
    assert page.locator("#talker-tabs >> text=Pairs").get_attribute("href") == (
        "/network?since=1h&customer=globex&talkers=pair"
    )

    page.goto(f"{network.api}/network?since=1h&interface=127.0.0.1:1")
    assert bytes_per_line(chart_spec(page, "customer-throughput")) == {"acme sent": pytest.approx(5_000_100)}
    assert bytes_per_line(chart_spec(page, "interface-throughput")) == {"127.0.0.1:1 in": pytest.approx(5_000_100)}

    page.goto(f"{network.api}/network?since=1h&customer=initech")
    assert page.locator("#no-customer-traffic").inner_text() == (
        "No customer traffic matches these filters in the last 1h."
    )


def test_tcp_health_per_customer_and_exporters(network: RunningVigil, page: Page) -> None:
    page.goto(f"{network.api}/network?since=1h")
    # Shares are over TCP flows with the customer at either end: acme sent 3 (one SYN only, one
    # RST); the internet ("unknown") received those 3 and globex's 1.
    assert table_rows(page, "#customer-health") == [
        ["unknown", "667 b/s", "15.56 kb/s", "0.000", "25.0%", "25.0%", "53"],
        ["acme", "11.11 kb/s", "0 b/s", "0.001", "33.3%", "33.3%", "443, 22"],
        ["globex", "4.44 kb/s", "667 b/s", "0.000", "0.0%", "0.0%", "80"],
    ]
    assert page.locator("#customer-health td.bad").count() == 4
    rows = table_rows(page, "#exporters")
    assert all(re.fullmatch(r"\d+s ago", row[2]) for row in rows), rows
    assert [row[:2] + row[3:] for row in rows] == [
        ["127.0.0.1", "v5", "1", "not used", "1 in 1", "none", "11.78 kb/s", "0.001"],
        ["127.0.0.2", "v10", "2", "1 known 1024", "not announced", "none", "4.44 kb/s", "0.000"],
    ]


def test_bad_filters_explain_the_fix(network: RunningVigil, page: Page) -> None:
    response = page.goto(f"{network.api}/network?interface=router-1")
    assert response is not None and response.status == 400
    assert page.locator("#error-message").inner_text() == (
        "interface='router-1' is not exporter:ifindex; give the exporter's address and the interface index, "
        "e.g. 192.0.2.1:7, as the interface list offers them."
    )
    response = page.goto(f"{network.api}/network?talkers=ports")
    assert response is not None and response.status == 400
    assert page.locator("#error-message").inner_text() == (
        "talkers='ports' is not a tab; choose one of customer, src, dst, pair."
    )


def test_without_flows_the_page_says_how_to_export_them(vigil_server: RunningVigil, page: Page) -> None:
    page.goto(f"{vigil_server.api}/network")
    text = page.locator("#empty").inner_text()
    netflow, ipfix = vigil_server.ports.netflow, vigil_server.ports.ipfix
    assert "No flow records were received in the last 1h." in text
    assert f"UDP 127.0.0.1:{netflow} (NetFlow) or UDP 127.0.0.1:{ipfix} (IPFIX)" in text
    assert f"softflowd -i eth0 -n 127.0.0.1:{netflow} -v 9" in text
    assert f"softflowd -i eth0 -n 127.0.0.1:{ipfix} -v 10" in text
    assert "set VIGIL_PREFIX_FILE to a CSV of cidr,customer,site" in text
    assert page.locator("#talkers, #customer-throughput").count() == 0
