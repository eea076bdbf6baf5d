"""The demo's metrics, StatsD and flow feeds reach a real Vigil and show in every API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningVigil, vigil_with_prefixes
from vigil.demo_feeds import DEMO_PREFIXES, DEMO_SLOS, DemoFeeds, DemoTargets
from vigil.store.slos import load_slo_file


@pytest.fixture
def demo_vigil(vigil_settings: dict[str, Any], tmp_path: Path) -> Iterator[RunningVigil]:
    yield from vigil_with_prefixes(vigil_settings, tmp_path, DEMO_PREFIXES)


def test_every_feed_lands_in_its_api(demo_vigil: RunningVigil) -> None:
    ports = demo_vigil.ports
    targets = DemoTargets("127.0.0.1", ports.otlp_grpc, ports.statsd, ports.netflow)
    feeds = DemoFeeds(targets, seed=3, incident_after_s=1.0)
    for _ in range(3):
        feeds.tick()
    feeds.shutdown()  # exports the metrics and logs
    expected = {"orders.placed", "order.value", "stock.reserved", "process.cpu.utilization"}
    expected |= {"shop.cart.views", "shop.queue.depth", "payments.card.latency"}
    deadline = time.monotonic() + 15
    while True:
        demo_vigil.flush()
        names = {m["name"] for m in httpx.get(f"{demo_vigil.api}/api/v1/metrics").json()}
        talkers = httpx.get(f"{demo_vigil.api}/api/v1/network/top-talkers", params={"by": "customer"}).json()
        patterns = httpx.get(f"{demo_vigil.api}/api/v1/logs/patterns", params={"service": "payments"}).json()
        if (names >= expected and len(talkers) == 3 and len(patterns) >= 2) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert names == expected
    # 3 ticks of 30 flows: clients in acme's and globex's subnets, servers on the internet.
    assert sorted(t["key"] for t in talkers) == ["acme", "globex", "unknown"]
    assert sum(t["flows"] for t in talkers) == 90
    # Payments' log patterns: authorisations every tick, and from the second tick the ledger outage.
    templates = {p["template"]: p for p in patterns}
    assert set(templates) >= {
        "payment for order <NUM> authorised in <NUM> ms",
        "ledger write failed: connection to ledger-db-<NUM> refused after <NUM> retries",
    }
    outage = templates["ledger write failed: connection to ledger-db-<NUM> refused after <NUM> retries"]
    assert (outage["severity_max"], outage["errors"] == outage["count"] > 0) == ("ERROR", True)


def test_the_demo_slos_cover_demo_services_and_load_as_an_slo_file(tmp_path: Path) -> None:
    slo_file = tmp_path / "slos.yaml"
    slo_file.write_text(DEMO_SLOS)
    slos = {slo.name: slo for slo in load_slo_file(str(slo_file))}
    assert sorted(slos) == ["checkout-latency", "frontend-availability", "payments-availability"]
    assert (slos["payments-availability"].service, slos["payments-availability"].objective) == ("payments", 99.5)
    assert (slos["checkout-latency"].operation, slos["checkout-latency"].threshold_ms) == ("POST /checkout", 500)
