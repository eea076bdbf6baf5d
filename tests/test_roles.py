"""Vigil split into roles (`vigil collector`, `vigil api`, `vigil detect`), all on one chDB store.

chDB allows one data directory per process and `open_client` shares its client, so the roles run
here side by side in one process, as they would against one ClickHouse server from several.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.conftest import RunningVigil
from tests.ports import free_port
from tests.spans import checkout_trace, expected_span, trace_id_of
from tests.waiting import wait_until
from vigil.server import Ports, Vigil
from vigil.settings import load_settings


class Roles:
    """Starts Vigils of given roles, each on its own event loop thread, and stops them all."""

    def __init__(self) -> None:
        self.running: list[tuple[RunningVigil, threading.Thread]] = []

    def start(self, roles: set[str], **settings: Any) -> RunningVigil:
        loop = asyncio.new_event_loop()
        vigil = Vigil(load_settings(**settings), frozenset(roles))
        thread = threading.Thread(target=loop.run_forever, name="vigil-role-loop", daemon=True)
        thread.start()
        ports = asyncio.run_coroutine_threadsafe(vigil.start(), loop).result(timeout=60)
        running = RunningVigil(vigil.settings, ports, vigil, loop)
        self.running.append((running, thread))
        return running

    def stop(self, running: RunningVigil) -> None:
        for index, (candidate, thread) in enumerate(self.running):
            if candidate is running:
                del self.running[index]
                asyncio.run_coroutine_threadsafe(running.vigil.shutdown(), running.loop).result(timeout=60)
                running.loop.call_soon_threadsafe(running.loop.stop)
                thread.join(timeout=10)
                running.loop.close()
                return

    def stop_all(self) -> None:
        for running, _ in list(self.running):
            self.stop(running)


@pytest.fixture
def roles() -> Iterator[Roles]:
    started = Roles()
    try:
        yield started
    finally:
        started.stop_all()


def can_bind(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_spans_sent_to_a_collector_are_read_back_through_an_api(roles: Roles, vigil_settings: dict[str, Any]) -> None:
    collector = roles.start({"collector"}, **vigil_settings)
    # The OTLP ports the api would bind if it ran receivers: they must stay free.
    otlp_grpc, otlp_http = free_port(), free_port()
    api = roles.start({"api"}, **{**vigil_settings, "otlp_grpc_port": otlp_grpc, "otlp_http_port": otlp_http})

    assert api.ports == Ports(http=api.ports.http, otlp_http=0, otlp_grpc=0)
    assert (can_bind(otlp_grpc), can_bind(otlp_http)) == (True, True)
    assert api.vigil.inserter is None and api.vigil.detectors is None and api.vigil.leadership is None
    assert collector.ports.otlp_grpc != 0 and collector.ports.http not in (0, api.ports.http)
    assert collector.vigil.detectors is None and collector.vigil.leadership is None

    spans = checkout_trace()
    exporter = OTLPSpanExporter(endpoint=collector.otlp_grpc, insecure=True)
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    collector.flush()

    trace_id = trace_id_of(spans)
    response = httpx.get(f"{api.api}/api/v1/traces/{trace_id}")
    assert response.status_code == 200
    expected = sorted((expected_span(s) for s in spans), key=lambda s: (s["start_time_unix_nano"], s["span_id"]))
    assert response.json() == {"trace_id": trace_id, "spans": expected}


def test_a_collector_answers_its_probes_and_serves_no_api_or_pages(
    roles: Roles, vigil_settings: dict[str, Any]
) -> None:
    collector = roles.start({"collector"}, **vigil_settings)
    assert httpx.get(f"{collector.api}/healthz").json() == {"status": "ok"}
    # A collector's readiness follows its spill queue (the write-ahead log), here empty.
    assert httpx.get(f"{collector.api}/readyz").json() == {
        "status": "ready",
        "store": "up",
        "spill_queue_bytes": 0,
        "spill_queue_limit": 2 * 1024**3,
    }
    for path in ("/api/v1/services", "/api/v1/traces", "/", "/openapi.json"):
        assert httpx.get(f"{collector.api}{path}").status_code == 404, path


def test_an_api_serves_pages_and_its_probes(roles: Roles, vigil_settings: dict[str, Any]) -> None:
    api = roles.start({"api"}, **vigil_settings)
    assert httpx.get(f"{api.api}/readyz").json() == {"status": "ready", "store": "up"}
    assert httpx.get(f"{api.api}/api/v1/services").json() == []
    assert httpx.get(f"{api.api}/", follow_redirects=True).status_code == 200


def leading(running: RunningVigil) -> bool:
    # Detectors and alerts run together, and only on the replica holding the lease.
    vigil = running.vigil
    return vigil.detectors is not None and vigil.alerts is not None


def test_of_two_detect_replicas_one_runs_and_the_other_takes_over_when_it_stops(
    roles: Roles, vigil_settings: dict[str, Any]
) -> None:
    # Long enough that a loaded machine cannot starve the renewals into a takeover mid-test.
    settings = {**vigil_settings, "lease_ttl": "4s"}
    first = roles.start({"detect"}, **settings)
    second = roles.start({"detect"}, **settings)
    # A detect replica listens only for its probes.
    for replica in (first, second):
        assert replica.ports == Ports(http=replica.ports.http, otlp_http=0, otlp_grpc=0)
        assert httpx.get(f"http://127.0.0.1:{replica.ports.http}/healthz").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{replica.ports.http}/api/v1/services").status_code == 404
    assert wait_until(lambda: leading(first) or leading(second))
    # Several standby polls: the lease stays where it is and no second engine starts.
    time.sleep(2.0)
    assert [leading(first), leading(second)].count(True) == 1
    leader, standby = (first, second) if leading(first) else (second, first)
    assert standby.vigil.detectors is None and standby.vigil.alerts is None

    roles.stop(leader)
    assert leader.vigil.detectors is None and leader.vigil.alerts is None
    assert wait_until(lambda: leading(standby))


def test_serve_runs_detectors_without_a_lease(roles: Roles, vigil_settings: dict[str, Any]) -> None:
    everything = roles.start({"collector", "api", "detect"}, **vigil_settings)
    assert everything.vigil.leadership is None
    assert leading(everything)
