"""Vigil binds its UDP receivers' ports (StatsD, NetFlow, IPFIX) once and hands the sockets to the collector."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from tests.conftest import start_vigil, stop_vigil
from tests.netflow_packets import V5Record, v5_packet
from tests.waiting import wait_until
from vigil.collector.collector import Collector, CollectorConfig
from vigil.collector.process import CollectorProcesses
from vigil.collector.statsd_receiver import StatsdReceiver, bind_statsd
from vigil.errors import ConfigError
from vigil.server import Vigil
from vigil.settings import load_settings


def taken_on_udp(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        try:
            other.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
        return False


def udp_ports(config: CollectorConfig) -> list[int]:
    assert config.statsd_port is not None and config.netflow_ports is not None
    return [config.statsd_port, *config.netflow_ports]


def probing_before(start: Callable[..., Any], config_of: Callable[[Any], CollectorConfig], seen: list[bool]) -> Any:
    """`start`, after recording whether each UDP port is still held when the collector is about to start."""

    def probed(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.extend(taken_on_udp(port) for port in udp_ports(config_of(self)))
        return start(self, *args, **kwargs)

    return probed


def rows(client: Client, database: str, sql: str) -> int:
    return int(client.query(sql.format(db=database)).result_rows[0][0])


@pytest.mark.parametrize("processes", [0, 1], ids=["in-process collector", "collector process"])
def test_ports_chosen_from_0_stay_held_until_the_collector_reads_them_and_both_signals_arrive(
    processes: int,
    vigil_settings: dict[str, Any],
    chdb_client: Client,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Vigil used to probe port 0 and let go; another socket could take the port before the collector bound it.
    held_at_start: list[bool] = []
    if processes == 0:
        monkeypatch.setattr(Collector, "start", probing_before(Collector.start, lambda c: c.config, held_at_start))
    else:
        monkeypatch.setattr(
            CollectorProcesses, "start", probing_before(CollectorProcesses.start, lambda p: p.configs[0], held_at_start)
        )
    vigil_settings.update(statsd_port=0, netflow_port=0, ipfix_port=0, collector_processes=processes)
    running, thread = start_vigil(load_settings(**vigil_settings))
    try:
        assert held_at_start == [True, True, True]
        ports = running.ports
        assert len({ports.statsd, ports.netflow, ports.ipfix}) == 3
        assert all(taken_on_udp(port) for port in (ports.statsd, ports.netflow, ports.ipfix))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"ports.udp:2|c|#service:checkout", ("127.0.0.1", ports.statsd))
            now = int(time.time())
            record = V5Record("10.0.0.5", "203.0.113.9", 40002, 443, 6, 0x18, packets=3, bytes=900, input=1, output=2)
            sender.sendto(v5_packet([record], uptime_ms=100_000, unix_secs=now), ("127.0.0.1", ports.netflow))
        with socket.create_connection(("127.0.0.1", ports.statsd), timeout=5) as tcp:
            tcp.sendall(b"ports.tcp:5|c|#service:checkout\n")

        def arrived() -> bool:
            running.flush()
            counters = rows(
                chdb_client, database, "SELECT sum(Value) FROM {db}.metrics_sum WHERE MetricName LIKE 'ports.%'"
            )
            return counters == 7 and rows(chdb_client, database, "SELECT sum(Bytes) FROM {db}.flows") == 900

        assert wait_until(arrived, timeout_s=30), "the StatsD lines and the flow did not all arrive"
    finally:
        stop_vigil(running, thread)
    # Stopped, Vigil holds none of them.
    assert not any(taken_on_udp(port) for port in (ports.statsd, ports.netflow, ports.ipfix))


def test_a_taken_flow_port_fails_the_start_naming_the_setting_and_releases_the_ports_already_bound(
    vigil_settings: dict[str, Any],
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        taken = squatter.getsockname()[1]
        vigil_settings.update(statsd_port=0, ipfix_port=taken)
        vigil = Vigil(load_settings(**vigil_settings))

        async def start_then_stop() -> None:
            try:
                await vigil.start()
            finally:
                await vigil.shutdown()

        with pytest.raises(ConfigError) as failure:
            asyncio.run(start_then_stop())
    assert str(failure.value) == (
        f"VIGIL_IPFIX_PORT: cannot listen for NetFlow/IPFIX on UDP 127.0.0.1:{taken}: Address already in use; "
        "if another flow collector owns the port, choose another port or set VIGIL_NETFLOW_ENABLED=false"
    )
    assert not taken_on_udp(vigil_settings["netflow_port"])


def test_a_statsd_port_chosen_from_0_is_not_shared_with_a_tcp_socket_waiting_to_listen() -> None:
    # OTLP ports are reserved the same way: bound with SO_REUSEADDR, listening only later. Had the
    # StatsD pair's TCP socket that option too, both binds would succeed and one listen then fail.
    udp, tcp = bind_statsd("127.0.0.1", 0)
    with udp, tcp, socket.socket(socket.AF_INET, socket.SOCK_STREAM) as reserving:
        reserving.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError) as refused:
            reserving.bind(("127.0.0.1", tcp.getsockname()[1]))
        assert refused.value.errno == errno.EADDRINUSE
        tcp.listen(1)


def test_a_collector_that_fails_to_start_releases_every_port_it_was_handed(
    vigil_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # StatsD's listen failing (as it once did, on a port a reserved OTLP socket held) left the flow
    # sockets open: no receiver had taken them yet.
    async def listen_fails(self: StatsdReceiver) -> None:
        raise OSError(errno.EADDRINUSE, "Address already in use")

    handed: list[int] = []
    start = Collector.start

    async def recording_ports(self: Collector) -> None:
        handed.extend(udp_ports(self.config))
        await start(self)

    monkeypatch.setattr(Collector, "start", recording_ports)
    monkeypatch.setattr(StatsdReceiver, "start", listen_fails)
    vigil_settings.update(statsd_port=0, netflow_port=0, ipfix_port=0, collector_processes=0)
    with pytest.raises(OSError, match="Address already in use"):
        start_vigil(load_settings(**vigil_settings))
    assert len(handed) == 3
    assert [taken_on_udp(port) for port in handed] == [False, False, False]
