"""Source allowlists: parsing and settings errors, decisions and their log, and the NetFlow receiver
refusing a real exporter on 127.0.0.2 (Linux routes all of 127/8 to loopback) while 127.0.0.1 is kept."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import pytest

from tests.collector.test_statsd_receiver import eventually
from tests.netflow_packets import flow_rows, softflowd_like
from vigil.collector.decode.netflow import NetflowConfig
from vigil.collector.enrich import ReloadingPrefixMap
from vigil.collector.netflow_receiver import NetflowReceiver
from vigil.collector.source_filter import OVERFLOW_SOURCE, SourceFilter, parse_allowed_sources
from vigil.errors import ConfigError
from vigil.settings import load_settings
from vigil.types import RowBatch

FORM = (
    "expected comma-separated IPv4 or IPv6 CIDRs, e.g. 10.0.0.0/8,192.0.2.7,2001:db8::/32 "
    "(a bare address is a /32 or /128; empty allows every source)"
)
LOGGER = "vigil.collector.source_filter"


# ---- parsing and settings -------------------------------------------------------------------------


def test_cidrs_bare_addresses_and_ipv6_are_parsed_and_empty_entries_skipped() -> None:
    assert parse_allowed_sources(" 10.0.0.0/8, 192.0.2.7 ,,2001:db8::/32, ::1", "X") == (
        ipaddress.IPv4Network("10.0.0.0/8"),
        ipaddress.IPv4Network("192.0.2.7/32"),
        ipaddress.IPv6Network("2001:db8::/32"),
        ipaddress.IPv6Network("::1/128"),
    )
    assert parse_allowed_sources("", "X") == ()
    assert SourceFilter.parse(" , ", "X", "StatsD") is None  # nothing listed: no filter, every source allowed


@pytest.mark.parametrize(
    ("entry", "hint"),
    [
        ("10.0.0.0/33", ""),
        ("loopback", ""),
        ("::1/129", ""),
        ("10.1.2.3/8", " (host bits set: did you mean 10.0.0.0/8?)"),
    ],
)
def test_a_malformed_entry_is_a_config_error_naming_the_setting_the_entry_and_the_form(entry: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_allowed_sources(f"127.0.0.1,{entry}", "VIGIL_NETFLOW_ALLOWED_SOURCES")
    assert str(info.value) == f"VIGIL_NETFLOW_ALLOWED_SOURCES: {entry!r} is not an address or CIDR{hint}; {FORM}"


def test_receivers_refuse_a_malformed_allowlist_at_construction() -> None:
    with pytest.raises(ConfigError) as info:
        NetflowReceiver("127.0.0.1", [0], NetflowConfig(), ReloadingPrefixMap(None), Flows(), allowed_sources="x")
    assert str(info.value) == f"VIGIL_NETFLOW_ALLOWED_SOURCES: 'x' is not an address or CIDR; {FORM}"


def test_settings_refuse_a_malformed_allowlist_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_STATSD_ALLOWED_SOURCES", "10.0.0.0/8,10.0.0.0/33")
    with pytest.raises(ConfigError) as info:
        load_settings(netflow_allowed_sources="192.0.2.1/24")
    assert str(info.value) == (
        "invalid settings:\n"
        f"  VIGIL_STATSD_ALLOWED_SOURCES='10.0.0.0/8,10.0.0.0/33': '10.0.0.0/33' is not an address or CIDR; {FORM}\n"
        "  VIGIL_NETFLOW_ALLOWED_SOURCES='192.0.2.1/24': '192.0.2.1/24' is not an address or CIDR "
        f"(host bits set: did you mean 192.0.2.0/24?); {FORM}"
    )


def test_settings_take_allowlists_from_the_environment_and_default_to_every_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (load_settings().statsd_allowed_sources, load_settings().netflow_allowed_sources) == ("", "")
    monkeypatch.setenv("VIGIL_STATSD_ALLOWED_SOURCES", "127.0.0.1, ::1/128")
    monkeypatch.setenv("VIGIL_NETFLOW_ALLOWED_SOURCES", "10.0.0.0/8")
    settings = load_settings()
    assert (settings.statsd_allowed_sources, settings.netflow_allowed_sources) == ("127.0.0.1, ::1/128", "10.0.0.0/8")


# ---- decisions, counts and the log ----------------------------------------------------------------


class Clock:
    """A monotonic clock the test moves by hand, to see a minute pass without waiting one."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def allowlist(text: str, clock: Clock | None = None, **options: Any) -> SourceFilter:
    networks = parse_allowed_sources(text, "VIGIL_STATSD_ALLOWED_SOURCES")
    return SourceFilter(networks, "VIGIL_STATSD_ALLOWED_SOURCES", "StatsD", clock=clock or Clock(), **options)


def test_sources_are_matched_by_family_with_mapped_ipv4_and_scoped_ipv6_understood() -> None:
    f = allowlist("10.0.0.0/8,192.0.2.7,2001:db8::/32,fe80::/10")
    decisions = {
        host: f.allows(host)
        for host in [
            "10.255.0.1",
            "192.0.2.7",
            "192.0.2.8",
            "::ffff:10.1.1.1",  # an IPv4 sender through a dual-stack socket
            "::ffff:192.0.2.9",
            "2001:db8::5",
            "2001:db9::5",
            "fe80::1%lo",
            "::a00:1",  # 10.0.0.1's bits as IPv6 are not 10.0.0.1
        ]
    }
    assert decisions == {
        "10.255.0.1": True,
        "192.0.2.7": True,
        "192.0.2.8": False,
        "::ffff:10.1.1.1": True,
        "::ffff:192.0.2.9": False,
        "2001:db8::5": True,
        "2001:db9::5": False,
        "fe80::1%lo": True,
        "::a00:1": False,
    }
    assert {source: r.count for source, r in f.refused().items()} == {
        "192.0.2.8": 1,
        "192.0.2.9": 1,
        "2001:db9::5": 1,
        "::a00:1": 1,
    }


def test_refusals_are_counted_per_source_and_logged_once_per_source_per_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    f = allowlist("127.0.0.1", clock)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for at, host in [(0, "127.0.0.2"), (1, "127.0.0.2"), (2, "127.0.0.3"), (59.9, "127.0.0.2"), (60, "127.0.0.2")]:
            clock.now = 1000.0 + at
            assert not f.allows(host)
        clock.now = 1061.0
        assert f.allows("127.0.0.1")  # allowed sources are neither counted nor logged
    template = (
        "StatsD: refused a datagram from {}: not in VIGIL_STATSD_ALLOWED_SOURCES "
        "({} refused from it so far; logged at most once a minute)"
    )
    assert [r.getMessage() for r in caplog.records] == [
        template.format("127.0.0.2", 1),
        template.format("127.0.0.3", 1),
        template.format("127.0.0.2", 4),
    ]
    assert {source: r.count for source, r in f.refused().items()} == {"127.0.0.2": 4, "127.0.0.3": 1}
    first, last = f.refused()["127.0.0.2"].first, f.refused()["127.0.0.2"].last
    assert first <= last <= time.time()


def test_sources_beyond_the_tracked_ones_are_counted_together(caplog: pytest.LogCaptureFixture) -> None:
    f = allowlist("10.0.0.0/8", max_tracked_sources=2)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for host in ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.1"]:
            assert not f.allows(host)
    assert {source: r.count for source, r in f.refused().items()} == {"192.0.2.1": 2, "192.0.2.2": 1, "::": 2}
    assert OVERFLOW_SOURCE == "::"
    assert [r.getMessage().split(":", 2)[1] for r in caplog.records] == [
        " refused a datagram from 192.0.2.1",
        " refused a datagram from 192.0.2.2",
        " refused a datagram from untracked sources",
    ]


# ---- the NetFlow receiver -------------------------------------------------------------------------


class Flows:
    """A `submit_all` consumer that keeps every batch."""

    def __init__(self) -> None:
        self.batches: list[RowBatch] = []
        self._lock = threading.Lock()

    def submit_all(self, batches: Sequence[RowBatch]) -> list[Future[None]]:
        with self._lock:
            self.batches.extend(batches)
        futures: list[Future[None]] = [Future() for _ in batches]
        for future in futures:
            future.set_result(None)
        return futures

    def flows(self) -> list[dict[str, Any]]:
        with self._lock:
            return [row for b in self.batches if b.table == "flows" for row in flow_rows(b.rows)]

    def exporters(self) -> list[tuple[str, int, int, int, list[tuple[str, int]], list[int]]]:
        """The last report: (exporter, version, packets, flows, malformed, templates) of each row."""
        with self._lock:
            reports = [b.rows for b in self.batches if b.table == "flow_exporters"]
        return [
            (
                str(ipaddress.IPv6Address(r["Exporter"]).ipv4_mapped or ipaddress.IPv6Address(r["Exporter"])),
                r["FlowVersion"],
                r["Packets"],
                r["Flows"],
                r["Malformed"],
                r["Templates"],
            )
            for r in reports[-1].to_pylist()
        ]


@contextlib.contextmanager
def netflow(
    consumer: Flows,
    allowed_sources: str = "",
    host: str = "127.0.0.1",
    prefixes: ReloadingPrefixMap | None = None,
    **options: Any,
) -> Iterator[NetflowReceiver]:
    """A NetflowReceiver on a free UDP port, running on its own event loop in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="netflow-test-loop", daemon=True)
    thread.start()
    receiver = NetflowReceiver(
        host,
        [0],
        NetflowConfig(),
        prefixes or ReloadingPrefixMap(None),
        consumer,
        allowed_sources=allowed_sources,
        **options,
    )

    def call(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=30)

    try:
        call(receiver.start())
        yield receiver
    finally:
        call(receiver.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def send_from(source: str, port: int, *datagrams: bytes, to: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET6 if ":" in source else socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        for datagram in datagrams:
            sock.sendto(datagram, (to, port))


def test_an_exporter_outside_the_list_is_refused_before_decoding_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    template, data = softflowd_like(9, records=3)
    consumer = Flows()
    with caplog.at_level(logging.WARNING, logger=LOGGER), netflow(consumer, "127.0.0.1/32, 10.0.0.0/8") as receiver:
        [port] = receiver.ports
        send_from("127.0.0.2", port, template, data, data)
        send_from("127.0.0.1", port, template, data)
        eventually(lambda: assert_equal(len(consumer.flows()), 3))
        eventually(lambda: assert_equal(receiver.refused(), {"127.0.0.2": 3}))
        # The refused exporter left no trace in the decoder: no templates, no status of its own.
        assert [(s.host, s.version, s.templates, s.packets) for s in receiver.decoder.exporters()] == [
            ("127.0.0.1", 9, (1024,), 2)
        ]
    assert {row["Exporter"] for row in consumer.flows()} == {"127.0.0.1"}
    assert len(consumer.flows()) == 3
    # stop() sends a last report: the refused source is there with its count, as version 0.
    assert consumer.exporters() == [
        ("127.0.0.1", 9, 2, 3, [], [1024]),
        ("127.0.0.2", 0, 3, 0, [("refused", 3)], []),
    ]
    assert [r.getMessage() for r in caplog.records] == [
        "NetFlow: refused a datagram from 127.0.0.2: not in VIGIL_NETFLOW_ALLOWED_SOURCES "
        "(1 refused from it so far; logged at most once a minute)"
    ]


def test_without_a_list_every_exporter_is_decoded() -> None:
    _, data = softflowd_like(5, records=2)
    consumer = Flows()
    with netflow(consumer, "") as receiver:
        assert receiver.allowlist is None
        send_from("127.0.0.2", receiver.ports[0], data)
        send_from("127.0.0.1", receiver.ports[0], data)
        eventually(lambda: assert_equal(len(consumer.flows()), 4))
        assert receiver.refused() == {}
    assert sorted({row["Exporter"] for row in consumer.flows()}) == ["127.0.0.1", "127.0.0.2"]


def test_an_ipv6_exporter_is_allowed_by_its_128() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    _, data = softflowd_like(5, records=2)
    consumer = Flows()
    with netflow(consumer, "::1/128", host="::1") as receiver:
        send_from("::1", receiver.ports[0], data, to="::1")
        eventually(lambda: assert_equal(len(consumer.flows()), 2))
        assert receiver.refused() == {}
    assert {row["Exporter"] for row in consumer.flows()} == {"::1"}


def assert_equal(got: object, expected: object) -> None:
    assert got == expected
