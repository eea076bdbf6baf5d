"""One collector: OTLP (and StatsD and NetFlow) receivers, decoding, batching, and this collector's write-ahead log.

`vigil serve` runs one collector in its own process (`VIGIL_COLLECTOR_PROCESSES=0`) or several
in child processes (`vigil.collector.process`) that share the OTLP ports with SO_REUSEPORT.
A collector never talks to ClickHouse: the inserter in the process that owns the store picks
up its log segments. StatsD and NetFlow run in the first collector only: one StatsD aggregator sees
every line, so a gauge, set or percentile of an interval is one row, not one per process; one flow
decoder holds every exporter's templates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from vigil.auth import AuthConfig, Tokens
from vigil.collector.batcher import Batcher, BatcherConfig
from vigil.collector.decode.netflow import NetflowConfig
from vigil.collector.decode_pool import DecodePool
from vigil.collector.enrich import ReloadingPrefixMap
from vigil.collector.ingest import OtlpIngest
from vigil.collector.log_templating import LogTemplater
from vigil.collector.netflow_receiver import NetflowReceiver
from vigil.collector.otlp_grpc import OtlpGrpcReceiver
from vigil.collector.otlp_http import create_otlp_http_app
from vigil.collector.request_dedup import JOURNAL_SUFFIX, DedupConfig, RequestDedup
from vigil.collector.self_monitoring import CountingSubmitter
from vigil.collector.statsd_aggregate import StatsdConfig
from vigil.collector.statsd_receiver import StatsdReceiver
from vigil.collector.wal import WalCapacity, WriteAheadLog
from vigil.collector.writer import WalWriter
from vigil.self_metrics import CollectorSnapshot, PipelineCounts

__all__ = ["Collector", "CollectorConfig", "EmbeddedServer", "UdpReceiverSockets", "bind_tcp"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """What one collector needs: where to listen and where its log lives (plain values, picklable)."""

    host: str
    otlp_grpc_port: int
    otlp_http_port: int
    wal_root: str
    wal_name: str
    wal_fsync: bool
    max_wal_bytes: int
    max_batch_rows: int
    max_batch_age: float
    max_queue_rows: int
    max_request_bytes: int
    max_grpc_message_bytes: int
    # StatsD on UDP and TCP; None: not in this collector.
    statsd_port: int | None = None
    statsd: StatsdConfig = field(default_factory=StatsdConfig)
    # Comma-separated CIDRs StatsD may come from (VIGIL_STATSD_ALLOWED_SOURCES); empty: any source.
    statsd_allowed_sources: str = ""
    # NetFlow v5/v9 and IPFIX on these UDP ports; None: not in this collector.
    netflow_ports: tuple[int, ...] | None = None
    netflow: NetflowConfig = field(default_factory=NetflowConfig)
    # Comma-separated CIDRs flow exporters may send from (VIGIL_NETFLOW_ALLOWED_SOURCES); empty: any source.
    netflow_allowed_sources: str = ""
    prefix_file: str = ""
    # Retried OTLP requests recognised within this window (VIGIL_DEDUP_WINDOW; window 0: off).
    dedup: DedupConfig = field(default_factory=DedupConfig)
    # API tokens (VIGIL_AUTH, VIGIL_TOKENS, VIGIL_TOKENS_FILE): OTLP senders need the ingest scope.
    auth: AuthConfig = field(default_factory=AuthConfig)


@dataclass(frozen=True, slots=True)
class UdpReceiverSockets:
    """StatsD's (UDP, TCP) pair and the NetFlow/IPFIX sockets, bound by the owner before the collector starts.

    Bound once, where the ports are chosen: a port found free and let go (port 0 resolved by a
    probe) could be taken by any other socket before the collector bound it again. A child process
    gets them with its arguments (multiprocessing passes the descriptors).
    """

    statsd: tuple[socket.socket, socket.socket] | None = None
    netflow: tuple[socket.socket, ...] | None = None

    def close(self) -> None:
        """Close these descriptors (the collector's own copies stay open in its process)."""
        for sock in (*(self.statsd or ()), *(self.netflow or ())):
            sock.close()


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its owner (several share one event loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_tcp(host: str, port: int, *, listen: bool, reuseport: bool = True) -> socket.socket:
    """A TCP socket bound to (host, port); with `reuseport`, other collectors may bind it too.

    Bound without listening, it reserves a port (resolving port 0) without taking connections.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) on accepted connections only when
    # the listening socket says TCP, and without it every kept-alive response waits ~40 ms for
    # the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}; is another Vigil running?") from None
    if listen:
        sock.listen(1024)
        sock.setblocking(False)
    return sock


class Collector:
    """Receivers -> decode -> batcher -> log templates -> write-ahead log, in the current process and event loop."""

    def __init__(
        self,
        config: CollectorConfig,
        on_append: Callable[[], None] | None = None,
        sockets: UdpReceiverSockets | None = None,
    ) -> None:
        self.config = config
        self.on_append = on_append
        # Without them, the StatsD and NetFlow receivers bind `config`'s ports themselves.
        self.sockets = sockets or UdpReceiverSockets()
        self._decode_pool = DecodePool(config.max_request_bytes)
        self._batcher: Batcher | None = None
        self._templater: LogTemplater | None = None
        self._grpc: OtlpGrpcReceiver | None = None
        self._http: EmbeddedServer | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._statsd: StatsdReceiver | None = None
        self._netflow: NetflowReceiver | None = None
        self._dedup: RequestDedup | None = None
        # What this collector received, refused and wrote (Vigil's /metrics). The UDP receivers
        # are kept after shutdown too, so the last snapshot still has their counts.
        self.counts = PipelineCounts()
        self._counted_statsd: StatsdReceiver | None = None
        self._counted_netflow: NetflowReceiver | None = None

    async def start(self) -> None:
        config = self.config
        wal = WriteAheadLog(Path(config.wal_root) / config.wal_name, fsync=config.wal_fsync)
        writer = WalWriter(
            wal, WalCapacity(Path(config.wal_root), config.max_wal_bytes), self.on_append, counts=self.counts
        )
        # The miner's state sits beside this collector's log (outside it: the inserter reads only segments).
        self._templater = LogTemplater(writer, Path(config.wal_root) / f"{config.wal_name}.templates")
        self._templater.start()
        self._batcher = Batcher(
            self._templater, BatcherConfig(config.max_batch_rows, config.max_batch_age, config.max_queue_rows)
        )
        self._batcher.start()
        self._decode_pool.start()
        if config.dedup.window > 0:
            # The journal sits beside this collector's log, where its siblings' journals are too.
            journal = Path(config.wal_root) / f"{config.wal_name}{JOURNAL_SUFFIX}"
            self._dedup = RequestDedup(config.dedup, journal)
            self._dedup.start()
        ingest = OtlpIngest(self._decode_pool, self._batcher, self._dedup, counts=self.counts)
        tokens = Tokens(config.auth)
        self._grpc = OtlpGrpcReceiver(
            ingest, f"{config.host}:{config.otlp_grpc_port}", config.max_grpc_message_bytes, tokens
        )
        await self._grpc.start()
        sock = bind_tcp(config.host, config.otlp_http_port, listen=True)
        app: Starlette = create_otlp_http_app(ingest, config.max_request_bytes, tokens)
        self._http = EmbeddedServer(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=75)
        )
        self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]))
        while not self._http.started:
            if self._http_task.done():
                raise RuntimeError("the OTLP/HTTP server failed to start; see the log above")
            await asyncio.sleep(0.01)
        if config.statsd_port is not None:
            self._statsd = StatsdReceiver(
                config.host,
                config.statsd_port,
                config.statsd,
                CountingSubmitter(self._batcher, self.counts, "statsd"),
                allowed_sources=config.statsd_allowed_sources,
                sockets=self.sockets.statsd,
            )
            self._counted_statsd = self._statsd
            await self._statsd.start()
        if config.netflow_ports is not None:
            prefixes = ReloadingPrefixMap(config.prefix_file or None)
            self._netflow = NetflowReceiver(
                config.host,
                config.netflow_ports,
                config.netflow,
                prefixes,
                CountingSubmitter(self._batcher, self.counts, "flows", accepted_table="flows"),
                allowed_sources=config.netflow_allowed_sources,
                sockets=self.sockets.netflow,
            )
            self._counted_netflow = self._netflow
            await self._netflow.start()

    def snapshot(self) -> CollectorSnapshot:
        """This collector's counts since it started (Vigil's /metrics and its self-monitoring)."""
        batcher = self._batcher
        snapshot = self.counts.snapshot(queued_rows=batcher.stats().queued_rows if batcher is not None else 0)
        if self._counted_statsd is not None:
            # StatsD items are lines, counted by the aggregator; its refusals and losses by CountingSubmitter.
            lines = self._counted_statsd.aggregator.stats()
            snapshot.accepted["statsd"] += lines.lines - lines.bad_lines
            snapshot.rejected["statsd"] += lines.bad_lines
            snapshot.dropped["statsd"] += self._counted_statsd.stats().rows_dropped
        if self._counted_netflow is not None:
            snapshot.rejected["flows"] += self._counted_netflow.problems
            snapshot.dropped["flows"] += self._counted_netflow.dropped()
        if self._dedup is not None:
            snapshot.deduplicated_requests = self._dedup.deduplicated
        return snapshot

    async def shutdown(self) -> None:
        """Stop receiving, then write everything acknowledged-to-be into the log. Idempotent."""
        if self._statsd is not None:
            await self._statsd.stop()  # its last flush goes to the batcher, still running
            self._statsd = None
        if self._netflow is not None:
            await self._netflow.stop()
            self._netflow = None
        if self._grpc is not None:
            await self._grpc.shutdown()
            self._grpc = None
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            await asyncio.gather(self._http_task, return_exceptions=True)
            self._http = None
        if self._batcher is not None:
            await asyncio.to_thread(self._batcher.shutdown)
            self._batcher = None
        if self._templater is not None:
            await asyncio.to_thread(self._templater.shutdown)
            self._templater = None
        await asyncio.to_thread(self._decode_pool.shutdown)
        if self._dedup is not None:
            self._dedup.shutdown()
        # The receivers closed the sockets they took; a start that failed before one took its own
        # leaves them here.
        self.sockets.close()
