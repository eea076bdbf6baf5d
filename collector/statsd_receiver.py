"""The StatsD receiver: UDP and TCP listeners on one asyncio loop, one aggregator, a flush every interval.

UDP takes one StatsD packet per datagram (lines separated by ``\\n``); TCP takes a stream of
``\\n``-terminated lines, where a partial last line waits for the rest and a line over
`max_line_bytes` is dropped (and counted) as bad. Both feed one `StatsdAggregator`. With an
allowlist (`allowed_sources`, ``VIGIL_STATSD_ALLOWED_SOURCES``), datagrams and connections from
other sources are dropped before parsing and counted per source in `ReceiverStats.refused`.

Every `StatsdConfig.flush_interval` seconds the aggregator's rows go to the consumer with
``submit_all`` (the `Batcher` API). When it refuses them with `Backpressure`, the rows are kept and
offered again with the next flush, up to `max_retained_rows` (beyond that the oldest are dropped and
counted), so a short stall downstream loses no aggregates. `stop` closes the listeners first, then
flushes one last time; call it before shutting the consumer down.

Wiring, on the collector's loop::

    receiver = StatsdReceiver(host, 8125, StatsdConfig(), batcher)
    await receiver.start()      # receiver.udp_port, receiver.tcp_port
    ...
    await receiver.stop()       # then batcher.shutdown()
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
import time
from dataclasses import dataclass, field

from vigil.collector.forwarding import BatchSubmitter, DatagramReader, Forwarder, udp_socket
from vigil.collector.source_filter import SourceFilter
from vigil.collector.statsd_aggregate import StatsdAggregator, StatsdConfig, warm_up
from vigil.types import RowBatch

__all__ = ["ReceiverStats", "StatsdReceiver", "bind_statsd"]

logger = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024
MAX_RETAINED_ROWS = 500_000
# How long `stop` keeps offering the last rows to a consumer that answers Backpressure.
FINAL_FLUSH_TIMEOUT_S = 5.0
_PORT_ATTEMPTS = 50


@dataclass(slots=True)
class ReceiverStats:
    """Flush-side counts: rows handed on, rows waiting after a refusal, and rows lost; TCP connections
    accepted; and, per source address, datagrams and connections refused by the allowlist."""

    flushes: int = 0
    rows_submitted: int = 0
    rows_retained: int = 0
    rows_dropped: int = 0
    rows_failed: int = 0
    tcp_connections: int = 0
    refused: dict[str, int] = field(default_factory=dict)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def bind_statsd(host: str, port: int, *, reuse_port: bool = False) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to one port, `port` or (for 0) one free for both; the TCP one not listening."""
    for _ in range(_PORT_ATTEMPTS if port == 0 else 1):
        udp = udp_socket(host, reuse_port=reuse_port)
        tcp = socket.socket(_family(host), socket.SOCK_STREAM)
        if reuse_port:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if port != 0:
            # So that a restart binds its port past the last run's connections in TIME_WAIT. Not for
            # a port of our choosing: it would let the bind share the port with another socket bound
            # there but not yet listening (as OTLP ports are reserved), and the listen fail later.
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        kind = "UDP"
        try:
            udp.bind((host, port))
            kind = "TCP"
            tcp.bind((host, udp.getsockname()[1]))
        except OSError as exc:
            udp.close()
            tcp.close()
            if port == 0 and kind == "TCP" and exc.errno == errno.EADDRINUSE:
                continue  # the free UDP port is taken on TCP: try another
            raise OSError(exc.errno, f"cannot listen for StatsD on {kind} {host}:{port}: {exc.strerror}") from None
        return udp, tcp
    raise OSError(errno.EADDRINUSE, f"no port free on both UDP and TCP at {host} after {_PORT_ATTEMPTS} tries")


class _Stream(asyncio.Protocol):
    """One TCP connection: whole lines go to the aggregator; a partial line waits for its end."""

    def __init__(self, receiver: StatsdReceiver) -> None:
        self._receiver = receiver
        self._aggregator = receiver.aggregator
        self._max_line = receiver.max_line_bytes
        self._partial = bytearray()
        self._discarding = False
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        allowlist = self._receiver.allowlist
        peer = transport.get_extra_info("peername")
        if allowlist is not None and not allowlist.allows(str(peer[0]) if peer else "", "a TCP connection"):
            # Closed before a byte is read; with no transport kept, connection_lost has nothing to forget.
            transport.close()
            return
        self._transport = transport
        self._receiver._opened(transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is None:  # a refused connection: bytes already buffered are not StatsD of ours
            return
        try:
            self._take(data)
        except Exception:  # never let one connection's bytes take the receiver down
            logger.exception("StatsD TCP data could not be aggregated")
            self._partial.clear()

    def _take(self, data: bytes) -> None:
        if self._discarding:
            # The rest of an over-long line, already counted: skip to its end.
            newline = data.find(b"\n")
            if newline < 0:
                return
            data = data[newline + 1 :]
            self._discarding = False
        newline = data.rfind(b"\n")
        if newline < 0:
            self._partial += data
        else:
            if self._partial:
                self._partial += data[: newline + 1]
                block = bytes(self._partial)
                self._partial.clear()
            else:
                block = data[: newline + 1]
            self._ingest(block)
            self._partial += data[newline + 1 :]
        if len(self._partial) > self._max_line:
            self._aggregator.reject(bytes(self._partial[:200]), f"line longer than {self._max_line} bytes")
            self._partial.clear()
            self._discarding = True

    def _ingest(self, block: bytes) -> None:
        if len(block) > self._max_line:
            lines = block.split(b"\n")
            kept = []
            for line in lines:
                if len(line) > self._max_line:
                    self._aggregator.reject(line[:200], f"line longer than {self._max_line} bytes")
                else:
                    kept.append(line)
            block = b"\n".join(kept)
        self._aggregator.ingest(block)

    def eof_received(self) -> bool | None:
        if self._transport is not None:
            self._finish()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._finish()
            self._receiver._connections.discard(self._transport)

    def _finish(self) -> None:
        # A last line without its newline is still a line once the client is done sending.
        if self._partial and not self._discarding:
            self._aggregator.ingest(bytes(self._partial))
        self._partial.clear()


class StatsdReceiver:
    """StatsD/DogStatsD over UDP and TCP on `host`:`port` (0 picks one free for both; see `udp_port`, `tcp_port`).

    With `reuse_port`, several processes may bind the same port; the kernel then spreads packets
    over them, so each one's rows hold part of a series (sums and counts add up, but sets, gauges and
    percentiles of one interval are per process).

    `allowed_sources` is a comma-separated list of CIDRs (empty: every source); a malformed one
    raises `ConfigError` here. `sockets`, from `bind_statsd`, are used instead of binding at `start`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        config: StatsdConfig,
        consumer: BatchSubmitter,
        *,
        max_retained_rows: int = MAX_RETAINED_ROWS,
        max_line_bytes: int = MAX_LINE_BYTES,
        reuse_port: bool = False,
        allowed_sources: str = "",
        sockets: tuple[socket.socket, socket.socket] | None = None,
    ) -> None:
        config.validate()
        self.allowlist = SourceFilter.parse(allowed_sources, "VIGIL_STATSD_ALLOWED_SOURCES", "StatsD")
        self.host = host
        self.port = port
        self.config = config
        self.consumer = consumer
        self.max_retained_rows = max_retained_rows
        self.max_line_bytes = max_line_bytes
        self.reuse_port = reuse_port
        # Bound by the owner (`bind_statsd`), so the port is held from the moment it is chosen.
        self._bound = sockets
        self.aggregator = StatsdAggregator(config)
        self._udp: socket.socket | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.BaseTransport] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._forwarder = Forwarder(consumer, "StatsD", max_retained_rows)
        self._stats = ReceiverStats()
        self._stats_lock = threading.Lock()
        self._udp_port = 0
        self._tcp_port = 0

    def _opened(self, transport: asyncio.BaseTransport) -> None:
        self._connections.add(transport)
        with self._stats_lock:
            self._stats.tcp_connections += 1

    @property
    def udp_port(self) -> int:
        return self._udp_port

    @property
    def tcp_port(self) -> int:
        return self._tcp_port

    @property
    def udp_receive_buffer(self) -> int:
        """The receive buffer the kernel granted (0 before `start`)."""
        if self._udp is None:
            return 0
        return int(self._udp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    def stats(self) -> ReceiverStats:
        forwarded = self._forwarder.stats()
        with self._stats_lock:
            s = self._stats
            return ReceiverStats(
                s.flushes,
                forwarded.rows_submitted,
                forwarded.rows_retained,
                forwarded.rows_dropped,
                forwarded.rows_failed,
                s.tcp_connections,
                {} if self.allowlist is None else {src: r.count for src, r in self.allowlist.refused().items()},
            )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(warm_up)
        if self._bound is not None:
            (udp, tcp), self._bound = self._bound, None
        else:
            udp, tcp = bind_statsd(self.host, self.port, reuse_port=self.reuse_port)
        try:
            udp.setblocking(False)
            tcp.listen(1024)
            tcp.setblocking(False)
            self._udp_port = udp.getsockname()[1]
            self._tcp_port = tcp.getsockname()[1]
            self._tcp = await loop.create_server(lambda: _Stream(self), sock=tcp)
            loop.add_reader(udp.fileno(), self._datagram_reader(udp))
            self._udp = udp
        except BaseException:
            if self._tcp is not None:
                self._tcp.close()
                self._tcp = None
            udp.close()
            tcp.close()
            raise
        self._stopping.clear()
        self._flusher = asyncio.create_task(self._flush_loop(), name="vigil-statsd-flush")

    def _datagram_reader(self, udp: socket.socket) -> DatagramReader:
        ingest, allowlist = self.aggregator.ingest, self.allowlist
        if allowlist is None:
            # Without a list the sender is not needed, and recv is cheaper than recvfrom.
            return DatagramReader(udp, lambda data, _sender: ingest(data), "StatsD")

        def checked(data: bytes, sender: tuple[str, int] | None) -> None:
            if sender is not None and allowlist.allows(sender[0]):
                ingest(data)

        return DatagramReader(udp, checked, "StatsD", with_sender=True)

    async def stop(self) -> None:
        """Stop listening, then flush what was aggregated (retrying `Backpressure` for a few seconds). Idempotent."""
        if self._udp is None and self._tcp is None:
            return
        if self._udp is not None:
            asyncio.get_running_loop().remove_reader(self._udp.fileno())
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for transport in list(self._connections):
                transport.close()
            await self._tcp.wait_closed()
            self._tcp = None
        if self._flusher is not None:
            # Not cancelled: a flush in progress must finish, or the rows it took would be lost.
            self._stopping.set()
            await self._flusher
            self._flusher = None
        # Closed connections hand over their last partial line; let their callbacks run first.
        await asyncio.sleep(0)
        await self.flush_now()
        await self._forwarder.drain(FINAL_FLUSH_TIMEOUT_S)

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.flush_interval
        next_at = loop.time() + interval
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), max(0.0, next_at - loop.time()))
                return
            except TimeoutError:
                pass
            # Fixed ticks, so the intervals do not drift by the time each flush takes; skip missed ones.
            next_at = max(next_at + interval, loop.time() + interval / 2)
            await self.flush_now()

    async def flush_now(self, *, aggregate: bool = True) -> None:
        """Flush the aggregator now (unless not `aggregate`) and offer its rows and any retained ones."""
        try:
            batches: list[RowBatch] = []
            if aggregate:
                batches = await asyncio.to_thread(self.aggregator.flush, time.time())
                with self._stats_lock:
                    self._stats.flushes += 1
            self._forwarder.submit(batches)
        except Exception:  # the loop must survive a bad flush; the next one starts afresh
            logger.exception("StatsD flush failed")
