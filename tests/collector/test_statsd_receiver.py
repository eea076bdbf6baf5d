"""The StatsD receiver end to end: real statsd and DogStatsD clients over UDP and TCP on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest
import statsd
from datadog.dogstatsd import DogStatsd

from vigil.collector.statsd_aggregate import StatsdConfig
from vigil.collector.statsd_receiver import StatsdReceiver
from vigil.errors import Backpressure, StoreUnavailable
from vigil.store.schema import LOGS_ARROW_SCHEMA, METRIC_ARROW_SCHEMAS
from vigil.types import RowBatch

SCHEMAS = {**METRIC_ARROW_SCHEMAS, "logs": LOGS_ARROW_SCHEMA}
WAIT_S = 10.0


class Collecting:
    """A `submit_all` consumer that keeps every batch; it refuses the first `refuse` calls, or fails the writes."""

    def __init__(self, refuse: int = 0, fail_writes: bool = False) -> None:
        self.refuse = refuse
        self.fail_writes = fail_writes
        self.refused = 0
        self.batches: list[RowBatch] = []
        self._lock = threading.Lock()

    def submit_all(self, batches: Sequence[RowBatch]) -> list[Future[None]]:
        with self._lock:
            if self.refuse > 0:
                self.refuse -= 1
                self.refused += 1
                raise Backpressure("the write queue is full", 1.0)
            for batch in batches:
                assert batch.rows.schema.equals(SCHEMAS[batch.table]), batch.table
            self.batches.extend(batches)
        futures: list[Future[None]] = [Future() for _ in batches]
        for future in futures:
            if self.fail_writes:
                future.set_exception(StoreUnavailable("ClickHouse is down"))
            else:
                future.set_result(None)
        return futures

    def rows(self, table: str) -> list[dict[str, Any]]:
        with self._lock:
            return [row for batch in self.batches if batch.table == table for row in batch.rows.to_pylist()]

    def sums(self) -> dict[str, float]:
        """Counter totals per name over every flush so far."""
        totals: dict[str, float] = {}
        for row in self.rows("metrics_sum"):
            totals[row["MetricName"]] = totals.get(row["MetricName"], 0.0) + row["Value"]
        return totals

    def last_gauges(self) -> dict[str, float]:
        return {row["MetricName"]: row["Value"] for row in self.rows("metrics_gauge")}

    def summaries(self) -> dict[str, tuple[int, float, float, float, str]]:
        """Count, Sum, min and max per name over every flush so far (a burst may straddle two flushes), and unit."""
        out: dict[str, tuple[int, float, float, float, str]] = {}
        for row in self.rows("metrics_summary"):
            values = row["ValueAtQuantiles.Value"]
            count, total, low, high, _ = out.get(row["MetricName"], (0, 0.0, values[0], values[-1], ""))
            out[row["MetricName"]] = (
                count + row["Count"],
                total + row["Sum"],
                min(low, values[0]),
                max(high, values[-1]),
                row["MetricUnit"],
            )
        return out


def eventually(check: Callable[[], None], timeout: float = WAIT_S) -> None:
    """Retry `check` until it passes, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@dataclass
class Running:
    receiver: StatsdReceiver
    loop: asyncio.AbstractEventLoop

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def lines(self) -> int:
        return self.receiver.aggregator.stats().lines


@contextlib.contextmanager
def running(
    consumer: Collecting, *, host: str = "127.0.0.1", flush_interval: float = 0.2, **options: Any
) -> Iterator[Running]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="statsd-test-loop", daemon=True)
    thread.start()
    receiver = StatsdReceiver(host, 0, StatsdConfig(flush_interval=flush_interval), consumer, **options)
    run = Running(receiver, loop)
    try:
        run.call(receiver.start())
        yield run
    finally:
        run.call(receiver.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture
def no_client_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both clients drop a sampled metric when random() > rate; here every one is sent."""
    monkeypatch.setattr("statsd.client.base.random.random", lambda: 0.0)
    monkeypatch.setattr("datadog.dogstatsd.base.random", lambda: 0.0)


def send_udp(port: int, *packets: bytes, host: str = "127.0.0.1") -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        for packet in packets:
            sock.sendto(packet, (host, port))


@pytest.mark.usefixtures("no_client_sampling")
def test_the_python_statsd_udp_client() -> None:
    consumer = Collecting()
    with running(consumer) as run:
        client = statsd.StatsClient("127.0.0.1", run.receiver.udp_port, prefix="py")
        client.incr("hits")
        client.incr("hits", 4, rate=0.5)
        client.incr("left", 5)
        client.decr("left", 2)
        client.gauge("temp", 20)
        client.gauge("temp", -3, delta=True)
        client.gauge("neg", -5)  # sent as the two lines 0|g and -5|g
        client.timing("lat", 12.5)
        client.timing("lat", 7.5, rate=0.5)
        client.set("users", "alice")
        client.set("users", "bob")
        with client.pipeline() as pipe:
            pipe.incr("piped")
            pipe.timing("piped_t", 5)
            pipe.incr("piped", 2)
        client.close()

        def arrived() -> None:
            assert consumer.sums() == {"py.hits": 9.0, "py.left": 3.0, "py.piped": 3.0}
            assert consumer.last_gauges() == {"py.temp": 17.0, "py.neg": -5.0, "py.users": 2.0}
            assert consumer.summaries() == {
                "py.lat": (3, 27.5, 7.5, 12.5, "ms"),
                "py.piped_t": (1, 5.0, 5.0, 5.0, "ms"),
            }

        eventually(arrived)
    assert [r["IsMonotonic"] for r in consumer.rows("metrics_sum") if r["MetricName"] == "py.left"] == [False]
    stats = run.receiver.aggregator.stats()
    assert (stats.lines, stats.bad_lines) == (15, 0)


@pytest.mark.usefixtures("no_client_sampling")
def test_the_python_statsd_tcp_client() -> None:
    consumer = Collecting()
    with running(consumer) as run:
        client = statsd.TCPStatsClient("127.0.0.1", run.receiver.tcp_port, prefix="tcp")
        client.incr("hits", 3)
        client.gauge("depth", 7)
        client.timing("lat", 40)
        with client.pipeline() as pipe:
            for i in range(200):
                pipe.incr("piped")
                pipe.timing("piped_t", i)
        client.close()
        eventually(lambda: assert_equal(consumer.sums(), {"tcp.hits": 3.0, "tcp.piped": 200.0}))
        eventually(lambda: assert_equal(consumer.last_gauges(), {"tcp.depth": 7.0}))
        eventually(
            lambda: assert_equal(
                consumer.summaries(),
                {"tcp.lat": (1, 40.0, 40.0, 40.0, "ms"), "tcp.piped_t": (200, sum(range(200)), 0.0, 199.0, "ms")},
            )
        )
    assert run.receiver.stats().tcp_connections == 1


def assert_equal(got: object, expected: object) -> None:
    assert got == expected


@pytest.mark.usefixtures("no_client_sampling")
def test_the_datadog_dogstatsd_client() -> None:
    consumer = Collecting()
    with running(consumer) as run:
        client = DogStatsd(host="127.0.0.1", port=run.receiver.udp_port, disable_telemetry=True)
        client.increment("dd.req", tags=["env:dev", "route:/x"])
        client.increment("dd.req", 2, tags=["route:/x", "env:dev"])
        client.increment("dd.req", tags=["env:prod", "service:shop", "version:1.2"], sample_rate=0.25)
        client.decrement("dd.queue", 3)
        client.gauge("dd.temp", 21.5, tags=["env:dev"])
        client.histogram("dd.size", 512, tags=["env:dev"])
        client.histogram("dd.size", 256, tags=["env:dev"])
        client.distribution("dd.dist", 3.25)
        client.timing("dd.t", 42)
        client.set("dd.users", "u1")
        client.set("dd.users", "u2")
        client.event("Deploy", "v1 shipped\nall green", alert_type="success", tags=["env:dev"], hostname="web-1")
        client.service_check("app.ok", 2, tags=["env:dev"], message="disk full")
        client.close_socket()

        def sums() -> dict[tuple[str, tuple[tuple[str, str], ...], str], float]:
            out: dict[tuple[str, tuple[tuple[str, str], ...], str], float] = {}
            for row in consumer.rows("metrics_sum"):
                key = (row["MetricName"], tuple(row["Attributes"]), row["ServiceName"])
                out[key] = out.get(key, 0.0) + row["Value"]
            return out

        def arrived() -> None:
            assert sums() == {
                ("dd.req", (("env", "dev"), ("route", "/x")), "statsd"): 3.0,
                ("dd.req", (("env", "prod"),), "shop"): 4.0,
                ("dd.queue", (), "statsd"): -3.0,
            }
            assert consumer.last_gauges() == {"dd.temp": 21.5, "dd.users": 2.0}
            assert consumer.summaries() == {
                "dd.size": (2, 768.0, 256.0, 512.0, ""),
                "dd.dist": (1, 3.25, 3.25, 3.25, ""),
                "dd.t": (1, 42.0, 42.0, 42.0, "ms"),
            }
            logs = [
                (r["EventName"], r["Body"], r["SeverityText"], r["SeverityNumber"], r["LogAttributes"])
                for r in consumer.rows("logs")
            ]
            assert sorted(logs) == [
                (
                    "Deploy",
                    "v1 shipped\nall green",
                    "INFO",
                    9,
                    [("env", "dev"), ("event.alert_type", "success"), ("host.name", "web-1")],
                ),
                ("app.ok", "disk full", "ERROR", 17, [("check.status", "2"), ("env", "dev")]),
            ]

        eventually(arrived)
    shop = [r for r in consumer.rows("metrics_sum") if r["ServiceName"] == "shop"]
    assert [(r["ServiceVersion"], r["ResourceAttributes"]) for r in shop] == [
        ("1.2", [("service.name", "shop"), ("service.version", "1.2")])
    ]
    assert run.receiver.aggregator.stats().bad_lines == 0


def test_a_packet_mixing_good_and_bad_lines_keeps_the_good_ones() -> None:
    consumer = Collecting()
    with running(consumer) as run:
        send_udp(run.receiver.udp_port, b"ok:1|c\npy.hits:abc|c\nok:2|c\r\nlat:1|x\n\nok:4|c")
        eventually(lambda: assert_equal(consumer.sums(), {"ok": 7.0}))
        stats = run.receiver.aggregator.stats()
        assert (stats.packets, stats.lines, stats.bad_lines) == (1, 5, 2)
        assert stats.last_bad_line == "\"lat:1|x\": unknown type 'x' (expected c, g, ms, h, s, d)"


def test_garbage_over_udp_and_tcp_does_not_stop_the_receiver() -> None:
    rng = random.Random(5)
    garbage = [rng.randbytes(rng.randrange(1, 1400)) for _ in range(300)]
    garbage += [b"\x00" * 1000, b"|" * 500, b":" * 500, b"_e{999999999999999999,1}:a|b", b"\xff\xfe\n" * 300]
    consumer = Collecting()
    with running(consumer) as run:
        send_udp(run.receiver.udp_port, *garbage)
        with socket.create_connection(("127.0.0.1", run.receiver.tcp_port)) as conn:
            for chunk in garbage:
                conn.sendall(chunk)
            conn.sendall(b"\n" + b"x" * 100_000 + b"\ntcp.after:5|c\n")
        eventually(lambda: assert_equal(run.receiver.aggregator.stats().bad_lines > 300, True))
        send_udp(run.receiver.udp_port, b"udp.after:1|c\nudp.after:2|c")
        with socket.create_connection(("127.0.0.1", run.receiver.tcp_port)) as conn:
            conn.sendall(b"tcp.after:1|c\n")
        eventually(
            lambda: assert_equal(
                {k: v for k, v in consumer.sums().items() if k.endswith(".after")}, {"udp.after": 3.0, "tcp.after": 6.0}
            )
        )


def test_tcp_lines_split_across_reads_wait_for_their_end() -> None:
    consumer = Collecting()
    with running(consumer) as run, socket.create_connection(("127.0.0.1", run.receiver.tcp_port)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in [b"a:1", b"|c\nb:", b"2|c\r\n", b"a:4|", b"c"]:
            conn.sendall(piece)
            time.sleep(0.02)
        eventually(lambda: assert_equal(run.lines(), 2))
        assert consumer.sums() in ({"a": 1.0, "b": 2.0}, {})  # the last line has no newline yet
        conn.shutdown(socket.SHUT_WR)  # end of stream: the last line is complete
        eventually(lambda: assert_equal(consumer.sums(), {"a": 5.0, "b": 2.0}))


def test_an_over_long_tcp_line_is_dropped_as_bad_and_the_stream_goes_on() -> None:
    consumer = Collecting()
    with (
        running(consumer, max_line_bytes=1024) as run,
        socket.create_connection(("127.0.0.1", run.receiver.tcp_port)) as conn,
    ):
        conn.sendall(b"before:1|c\n" + b"long:" + b"9" * 3000)
        time.sleep(0.05)
        conn.sendall(b"9" * 3000 + b"|c\nafter:1|c\n" + b"x" * 2000 + b"\nlast:1|c\n")
        eventually(lambda: assert_equal(consumer.sums(), {"before": 1.0, "after": 1.0, "last": 1.0}))
        stats = run.receiver.aggregator.stats()
        assert stats.bad_lines == 2
        assert stats.last_bad_line.endswith('...": line longer than 1024 bytes')


def test_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    consumer = Collecting()
    with running(consumer, host="::1") as run:
        send_udp(run.receiver.udp_port, b"v6:1|c", host="::1")
        with socket.create_connection(("::1", run.receiver.tcp_port)) as conn:
            conn.sendall(b"v6:2|c\n")
        eventually(lambda: assert_equal(consumer.sums(), {"v6": 3.0}))


def test_port_zero_picks_one_port_for_udp_and_tcp_and_the_receive_buffer_is_enlarged() -> None:
    with running(Collecting()) as run:
        assert run.receiver.udp_port == run.receiver.tcp_port > 0
        # The kernel grants at most twice net.core.rmem_max; the default is far smaller than 1 MiB.
        assert run.receiver.udp_receive_buffer >= 1024 * 1024


def test_a_port_in_use_is_refused_with_its_protocol_named() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        receiver = StatsdReceiver("127.0.0.1", port, StatsdConfig(), Collecting())
        with pytest.raises(OSError, match=f"cannot listen for StatsD on UDP 127.0.0.1:{port}: Address already in use"):
            asyncio.run(receiver.start())


def test_rows_refused_with_backpressure_are_offered_again_and_none_are_lost() -> None:
    consumer = Collecting(refuse=3)
    with running(consumer) as run:
        send_udp(run.receiver.udp_port, b"r:1|c\nlat:5|ms")
        eventually(lambda: assert_equal(consumer.refused, 1))
        send_udp(run.receiver.udp_port, b"r:2|c\nlat:7|ms")
        eventually(lambda: assert_equal(consumer.sums(), {"r": 3.0}))
        assert consumer.summaries() == {"lat": (2, 12.0, 5.0, 7.0, "ms")}
        assert consumer.refused == 3
        stats = run.receiver.stats()
        assert (stats.rows_dropped, stats.rows_retained) == (0, 0)


def test_retained_rows_are_bounded_by_dropping_the_oldest() -> None:
    consumer = Collecting(refuse=1_000_000)
    with running(consumer, flush_interval=60.0, max_retained_rows=3) as run:
        send_udp(run.receiver.udp_port, b"a:1|c\nb:1|c")
        eventually(lambda: assert_equal(run.lines(), 2))
        run.call(run.receiver.flush_now())
        send_udp(run.receiver.udp_port, b"c:1|c\nd:1|c")
        eventually(lambda: assert_equal(run.lines(), 4))
        run.call(run.receiver.flush_now())
        stats = run.receiver.stats()
        assert (stats.rows_retained, stats.rows_dropped) == (3, 1)
        consumer.refuse = 0
        run.call(run.receiver.flush_now(aggregate=False))
        assert consumer.sums() == {"b": 1.0, "c": 1.0, "d": 1.0}


def test_stop_flushes_what_was_aggregated() -> None:
    consumer = Collecting()
    with running(consumer, flush_interval=60.0) as run:
        send_udp(run.receiver.udp_port, b"late:1|c\nlate:2|c")
        eventually(lambda: assert_equal(run.lines(), 2))
        assert consumer.batches == []
    assert consumer.sums() == {"late": 3.0}


def test_failed_writes_are_counted() -> None:
    consumer = Collecting(fail_writes=True)
    with running(consumer) as run:
        send_udp(run.receiver.udp_port, b"x:1|c\ny:1|g")
        eventually(lambda: assert_equal(run.receiver.stats().rows_failed, 2))


# ---- source allowlists (VIGIL_STATSD_ALLOWED_SOURCES) ---------------------------------------------

REFUSAL_LOG = (
    "StatsD: refused {} from {}: not in VIGIL_STATSD_ALLOWED_SOURCES "
    "({} refused from it so far; logged at most once a minute)"
)


def refusal_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vigil.collector.source_filter"]


def closed_by_receiver(conn: socket.socket) -> bool:
    """Whether the other end closed `conn` (EOF, or a reset when it closed with our bytes unread)."""
    conn.settimeout(WAIT_S)
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.usefixtures("no_client_sampling")
def test_udp_from_a_source_outside_the_list_is_refused_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    consumer = Collecting()
    with caplog.at_level(logging.WARNING), running(consumer, allowed_sources="127.0.0.1/32") as run:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spoof:
            spoof.bind(("127.0.0.2", 0))
            for _ in range(3):
                spoof.sendto(b"spoofed:5|c\nspoofed_t:1|ms", ("127.0.0.1", run.receiver.udp_port))
        client = statsd.StatsClient("127.0.0.1", run.receiver.udp_port)
        client.incr("hits", 2)
        client.close()
        eventually(lambda: assert_equal(consumer.sums(), {"hits": 2.0}))
        eventually(lambda: assert_equal(run.receiver.stats().refused, {"127.0.0.2": 3}))
    assert consumer.sums() == {"hits": 2.0}
    assert consumer.summaries() == {}
    stats = run.receiver.aggregator.stats()
    assert (stats.packets, stats.lines, stats.bad_lines) == (1, 1, 0)  # refused datagrams are never parsed
    assert refusal_logs(caplog) == [REFUSAL_LOG.format("a datagram", "127.0.0.2", 1)]


@pytest.mark.usefixtures("no_client_sampling")
def test_tcp_from_a_source_outside_the_list_is_closed_unread_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    consumer = Collecting()
    with caplog.at_level(logging.WARNING), running(consumer, allowed_sources="10.0.0.0/8, 127.0.0.1") as run:
        address = ("127.0.0.1", run.receiver.tcp_port)
        for _ in range(2):
            with socket.create_connection(address, source_address=("127.0.0.2", 0)) as spoof:
                spoof.sendall(b"spoofed:5|c\n")
                assert closed_by_receiver(spoof)
        client = statsd.TCPStatsClient("127.0.0.1", run.receiver.tcp_port)
        client.incr("hits", 3)
        client.gauge("depth", 7)
        client.close()
        eventually(lambda: assert_equal(consumer.sums(), {"hits": 3.0}))
        eventually(lambda: assert_equal(consumer.last_gauges(), {"depth": 7.0}))
    stats = run.receiver.stats()
    assert (stats.tcp_connections, stats.refused) == (1, {"127.0.0.2": 2})
    assert consumer.sums() == {"hits": 3.0}
    assert run.receiver.aggregator.stats().lines == 2
    assert refusal_logs(caplog) == [REFUSAL_LOG.format("a TCP connection", "127.0.0.2", 1)]


def test_ipv6_loopback_is_allowed_by_its_128_and_refused_by_an_ipv4_list() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    consumer = Collecting()
    with running(consumer, host="::1", allowed_sources="::1/128") as run:
        send_udp(run.receiver.udp_port, b"v6:1|c", host="::1")
        with socket.create_connection(("::1", run.receiver.tcp_port)) as conn:
            conn.sendall(b"v6:2|c\n")
        eventually(lambda: assert_equal(consumer.sums(), {"v6": 3.0}))
        assert run.receiver.stats().refused == {}
    consumer = Collecting()
    with running(consumer, host="::1", allowed_sources="127.0.0.0/8") as run:
        send_udp(run.receiver.udp_port, b"v6:1|c", host="::1")
        with socket.create_connection(("::1", run.receiver.tcp_port)) as conn:
            conn.sendall(b"v6:2|c\n")
            assert closed_by_receiver(conn)
        eventually(lambda: assert_equal(run.receiver.stats().refused, {"::1": 2}))
    assert consumer.sums() == {}
