"""`vigil serve` (every part in one process on one event loop) and the roles it splits into.

This module is the composition root: it alone imports the parts (collector, api,
dashboards) to wire them; the import contracts in pyproject.toml exempt it and `vigil.cli`.

`Vigil` runs a set of roles; `vigil serve` runs all three, each role command one:

- **collector**: receivers (OTLP receivers, decoding, batching, each with its own log) in
  child processes sharing the OTLP ports, or in this process with `VIGIL_COLLECTOR_PROCESSES=0`;
  the inserter that moves write-ahead log segments into ClickHouse; its own ingest samples
  (`SelfSampler`); and /healthz and /readyz on VIGIL_HTTP_PORT for probes. Against a ClickHouse
  server, collectors scale out behind a load balancer, each with its own log.
- **api**: the API and pages.
- **detect**: detectors, and the alerts that follow their findings, with /healthz and /readyz
  on VIGIL_HTTP_PORT. Split from the others it runs them only while it holds the `detect`
  leader lease (vigil.store.lease), so replicas can stand by; in `vigil serve` the process is
  alone and needs no lease.

Every role migrates (idempotently), so any one may start first, and serves Vigil's own metrics
at /metrics (`vigil.self_metrics`); `VIGIL_SELF_TRACES_ENDPOINT` adds its own traces (`vigil.telemetry`).

Start order follows the data flow backwards (store, inserter, collectors, web), so nothing
accepts data before its downstream is ready; shutdown runs forwards, so collectors stop
receiving and drain into their logs, then the inserter drains the logs into ClickHouse.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import Depends, FastAPI
from opentelemetry.trace import Tracer

from vigil.alerts.engine import AlertLoop, build_alert_loop
from vigil.alerts.rules import load_rules_file
from vigil.api.app import create_app, web_auth
from vigil.api.auth import authorize
from vigil.api.routers import health
from vigil.api.routers import self_metrics as metrics_route
from vigil.api.routers.health import SpillQueue
from vigil.auth import AuthConfig, Tokens, new_secret
from vigil.collector.collector import Collector, CollectorConfig, EmbeddedServer, UdpReceiverSockets, bind_tcp
from vigil.collector.decode.netflow import NetflowConfig
from vigil.collector.enrich import ReloadingPrefixMap
from vigil.collector.netflow_receiver import bind_flow_ports
from vigil.collector.process import CollectorProcesses
from vigil.collector.request_dedup import DedupConfig
from vigil.collector.request_exchange import RequestExchange
from vigil.collector.self_monitoring import SelfSampler, snapshot_path, wal_backlog
from vigil.collector.statsd_aggregate import StatsdConfig
from vigil.collector.statsd_receiver import bind_statsd
from vigil.collector.wal import WalCapacity
from vigil.collector.writer import Inserter, InserterConfig
from vigil.dashboards import site
from vigil.dashboards.reads import READ_SLOTS
from vigil.dashboards.render import Receivers
from vigil.detectors.engine import DetectorEngine
from vigil.errors import ConfigError, StoreUnavailable
from vigil.self_metrics import (
    AlertMetrics,
    CollectorFamilies,
    CollectorSnapshot,
    DetectorMetrics,
    InserterMetrics,
    MeasureRequests,
    SelfMetrics,
    WalBacklog,
    WalFamilies,
    read_snapshot,
)
from vigil.settings import Settings, redacted_url
from vigil.store.alerts import AlertStore
from vigil.store.client import Client, HandlePool, database_from_url, open_client
from vigil.store.lease import Leadership, Lease, holder_id
from vigil.store.migrate import ddl_context, migrate
from vigil.store.read import StoreReader
from vigil.store.slos import SloStore, load_slo_file
from vigil.store.write import ConnectingStoreWriter, StoreWriter
from vigil.telemetry import SELF, SELF_TRACES_TOKEN, SelfTracing, TraceRequests, traces_url

__all__ = ["ROLES", "Ports", "Vigil", "build_health_app", "build_web_app", "stop_on_signals"]

# What `vigil serve` runs; `vigil collector`, `vigil api` and `vigil detect` run one each.
ROLES = frozenset({"collector", "api", "detect"})

# The lease that `detect` replicas compete for.
DETECT_LEASE = "detect"

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ports:
    """The ports actually bound (settings may ask for 0: any free port); 0 for what a role does not bind."""

    http: int
    otlp_http: int
    otlp_grpc: int
    statsd: int = 0  # UDP and TCP; 0 when StatsD is off
    netflow: int = 0  # UDP; 0 when flows are off
    ipfix: int = 0


def build_web_app(
    settings: Settings,
    reader: StoreReader,
    tokens: Tokens | None = None,
    *,
    spill_queue: SpillQueue | None = None,
    self_metrics: SelfMetrics | None = None,
    tracer: Tracer | None = None,
) -> FastAPI:
    """The API plus the dashboard pages on one app (port VIGIL_HTTP_PORT).

    With a `spill_queue` (a collector runs here too), /readyz follows it rather than ClickHouse.
    /metrics serves `self_metrics`; with a `tracer`, every request but probes and scrapes is a span.
    """
    app = create_app(settings, reader, tokens)
    app.state.spill_queue = spill_queue
    app.state.self_metrics = self_metrics
    app.include_router(metrics_route.router)
    site.install(app)
    if tracer is not None:
        app.add_middleware(TraceRequests, tracer=tracer)
    if self_metrics is not None:
        app.add_middleware(MeasureRequests, metrics=self_metrics.requests)
    return app


def build_health_app(
    settings: Settings,
    reader: StoreReader | None,
    tokens: Tokens | None = None,
    *,
    spill_queue: SpillQueue | None = None,
    self_metrics: SelfMetrics | None = None,
) -> FastAPI:
    """/healthz, /readyz and /metrics: what a collector or detector serves on VIGIL_HTTP_PORT for its probes.

    A collector passes its `spill_queue`: it is ready while the queue has room, ClickHouse or not.
    """
    app = FastAPI(
        title="Vigil probes",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(authorize)],
        max_body_size=settings.max_api_body_bytes,
    )
    app.state.settings = settings
    app.state.reader = reader
    app.state.spill_queue = spill_queue
    app.state.auth = web_auth(settings, tokens)
    app.state.self_metrics = self_metrics
    app.include_router(health.router)
    app.include_router(metrics_route.router)
    if self_metrics is not None:
        app.add_middleware(MeasureRequests, metrics=self_metrics.requests)
    return app


def resolve_processes(setting: int) -> int:
    """Collector processes for a `VIGIL_COLLECTOR_PROCESSES` value: -1 means one per core."""
    return (os.cpu_count() or 1) if setting < 0 else setting


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _socket(host: str, port: int, variable: str, *, listen: bool, reuseport: bool) -> socket.socket:
    try:
        return bind_tcp(host, port, listen=listen, reuseport=reuseport)
    except OSError as exc:
        raise ConfigError(f"{variable}: {exc.strerror}") from None


def _statsd_sockets(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """StatsD's UDP and TCP sockets on one port (0: one free for both), kept until the collector reads them."""
    try:
        return bind_statsd(host, port)
    except OSError as exc:
        raise ConfigError(
            f"VIGIL_STATSD_PORT: {exc.strerror}; if another StatsD daemon owns the port, choose another "
            "port or set VIGIL_STATSD_ENABLED=false"
        ) from None


def _flow_sockets(host: str, ports: dict[str, int]) -> tuple[socket.socket, ...]:
    """One UDP socket per flow port setting (0: a free port), kept until the collector reads them."""
    sockets: list[socket.socket] = []
    try:
        for variable, port in ports.items():
            try:
                sockets.extend(bind_flow_ports(host, [port]))
            except OSError as exc:
                raise ConfigError(
                    f"{variable}: {exc.strerror}; if another flow collector owns the port, choose another "
                    "port or set VIGIL_NETFLOW_ENABLED=false"
                ) from None
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return tuple(sockets)


# Embedded store handles opened at start: one per page read that may run at once, and one each
# for the inserter, the detectors, the alert loop and the self-metrics sampler.
SPARE_HANDLES = READ_SLOTS + 4


def _open_spare_handles(client: Client | None) -> None:
    if isinstance(client, HandlePool):
        try:
            client.open_spares(SPARE_HANDLES)
        except Exception:  # calls open what they need anyway
            logger.warning("could not open spare handles to the embedded store", exc_info=True)


class Vigil:
    """The service, or some of its roles (see `ROLES`): by default all of them, `vigil serve`."""

    def __init__(self, settings: Settings, roles: frozenset[str] = ROLES) -> None:
        unknown = roles - ROLES
        if unknown or not roles:
            raise ValueError(f"roles must be a non-empty subset of {sorted(ROLES)}, not {sorted(roles)}")
        self.settings = settings
        self.roles = roles
        self.ports: Ports | None = None
        self.inserter: Inserter | None = None  # public: tests and drains wait on it
        # Collectors on a ClickHouse server share their request digests with other hosts' (public: tests).
        self.request_exchange: RequestExchange | None = None
        self._web: EmbeddedServer | None = None
        self._web_task: asyncio.Task[None] | None = None
        self._collector: Collector | None = None
        self.detectors: DetectorEngine | None = None
        self.alerts: AlertLoop | None = None
        self.leadership: Leadership | None = None  # the detect role apart from `vigil serve`
        self._processes: CollectorProcesses | None = None
        # Sockets this process bound and closes at shutdown (also after a start that failed midway).
        self._bound: list[socket.socket] = []
        self._stopped = asyncio.Event()
        # Vigil's own metrics (/metrics) and traces: this instance's, never process-global.
        self.self_metrics = SelfMetrics()
        self.tracing = SelfTracing(enabled=bool(settings.self_traces_endpoint), roles=roles)
        self._detector_metrics: DetectorMetrics | None = None
        self._alert_metrics: AlertMetrics | None = None
        self.sampler: SelfSampler | None = None  # public: tests take samples at chosen times

    async def start(self) -> Ports:
        settings = self.settings
        roles = self.roles
        auth = AuthConfig(settings.auth, settings.tokens, settings.tokens_file)
        tokens = Tokens(auth)  # a bad tokens file stops the start here, naming it
        if settings.auth == "auto" and not tokens.required and not _is_loopback(settings.bind):
            raise ConfigError(
                f"VIGIL_BIND={settings.bind!r} is not a loopback address and no API tokens are configured; "
                "set VIGIL_TOKENS or VIGIL_TOKENS_FILE (`vigil token new` makes one), or VIGIL_AUTH=off to "
                "serve without authentication on a trusted network"
            )
        own_traces_secret = None
        if settings.self_traces_endpoint == SELF and tokens.required and "collector" in roles:
            # Its spans go to its own receivers, which want an ingest token: one made for this run, known
            # to no one else. (A Vigil without a collector sends "self" to another's: its headers are the
            # OTel exporter's, OTEL_EXPORTER_OTLP_TRACES_HEADERS.)
            own_traces_secret = new_secret()
            own_token = f"{SELF_TRACES_TOKEN}:ingest:{own_traces_secret}"
            auth = dataclasses.replace(auth, inline=f"{auth.inline},{own_token}" if auth.inline else own_token)
            tokens = Tokens(auth)
        database = database_from_url(settings.clickhouse_url, settings.clickhouse_database)
        client = await self._open_store(database)
        # Meanwhile the rest starts: the handles the first pages' reads and the background loops
        # would otherwise open as they come, each waiting for its own.
        spares = asyncio.create_task(asyncio.to_thread(_open_spare_handles, client))
        if roles & {"api", "detect"}:
            assert client is not None  # only a collector alone starts without ClickHouse
            # SLOs and alert rules are read by pages and detectors; collectors never look at them.
            if settings.slo_file:
                # Checked before anything listens: a broken SLO file stops start-up with its line.
                await asyncio.to_thread(SloStore(client, database).sync_file, load_slo_file(settings.slo_file))
            if settings.alert_rules_file:
                rules = load_rules_file(settings.alert_rules_file)
                document = {"rules": [rule.to_dict() for rule in rules]}
                await asyncio.to_thread(AlertStore(client, database).put_rules, document, "file")
        reader = StoreReader(client, database) if client is not None else None

        if "collector" in roles:
            self.inserter = Inserter(
                self._store_writer(client, database),
                Path(settings.wal_path),
                InserterConfig(settings.insert_rows, settings.insert_interval),
                fsync=settings.wal_fsync,
                metrics=InserterMetrics(self.self_metrics.registry),
                tracer=self.tracing.tracer("vigil.collector.inserter"),
            )
            self.self_metrics.register(WalFamilies(self._wal_backlog))
            self.self_metrics.register(CollectorFamilies(self._collector_snapshots))
            await asyncio.to_thread(self.inserter.start)
            if not settings.embedded and settings.dedup_window > 0:
                # Behind a load balancer a retry may reach another host: the hosts trade digests
                # through ClickHouse. (An embedded store has one host by construction.) Started
                # before the collectors, which find its journal beside theirs.
                self.request_exchange = RequestExchange(
                    Path(settings.wal_path),
                    lambda: open_client(settings.clickhouse_url),
                    database,
                    holder_id(),
                    window_s=settings.dedup_window,
                )
                await asyncio.to_thread(self.request_exchange.start)
        if "detect" in roles:
            assert client is not None
            self._detector_metrics = DetectorMetrics(self.self_metrics.registry)
            self._alert_metrics = AlertMetrics(self.self_metrics.registry)
            await self._start_detect(client, database)

        host = settings.bind
        http_port = otlp_http = otlp_grpc = 0
        statsd_port: int | None = None
        netflow_ports: tuple[int, int] | None = None
        if roles:  # every role answers probes; only api serves the API and pages
            # Not shared: a second server on the web port is a mistake to report, not to balance.
            web_socket = _socket(host, settings.http_port, "VIGIL_HTTP_PORT", listen=True, reuseport=False)
            self._bound.append(web_socket)
            http_port = web_socket.getsockname()[1]
        if "collector" in roles:
            otlp_grpc, otlp_http, statsd_port, netflow_ports = await self._start_collectors(auth)
            self._start_sampler()
        # Known now: "self" is the OTLP/HTTP port just bound (or, without a collector here, the configured one).
        traces = traces_url(
            settings.self_traces_endpoint, host=host, otlp_http_port=otlp_http or settings.otlp_http_port
        )
        if traces:
            self.tracing.export_to(traces, bearer=own_traces_secret)
        web_app: FastAPI | None = None
        if roles:
            # A collector or detector alone serves its probes only; the API and pages are the api role's.
            spill_queue = WalCapacity(Path(settings.wal_path), settings.max_wal_bytes) if "collector" in roles else None
            web_app = (
                build_web_app(
                    settings,
                    reader,
                    tokens,
                    spill_queue=spill_queue,
                    self_metrics=self.self_metrics,
                    tracer=self.tracing.tracer("vigil.api") if self.tracing.enabled else None,
                )
                if "api" in roles and reader is not None  # reader is None only for a collector alone
                else build_health_app(settings, reader, tokens, spill_queue=spill_queue, self_metrics=self.self_metrics)
            )
            config = uvicorn.Config(web_app, log_level="warning", access_log=False, lifespan="off")
            self._web = EmbeddedServer(config)
            self._web_task = asyncio.create_task(self._web.serve(sockets=[web_socket]))
            while not self._web.started:
                if self._web_task.done():
                    raise RuntimeError("the web server failed to start; see the log above")
                await asyncio.sleep(0.01)
        self.ports = Ports(
            http=http_port,
            otlp_http=otlp_http,
            otlp_grpc=otlp_grpc,
            statsd=statsd_port or 0,
            netflow=netflow_ports[0] if netflow_ports else 0,
            ipfix=netflow_ports[1] if netflow_ports else 0,
        )
        if web_app is not None and roles >= {"collector", "api"}:
            # Pages tell newcomers where to send data: the ports bound, not the settings' 0s. An api
            # alone shows the configured ports: its collectors' addresses are the load balancer's.
            web_app.state.receivers = Receivers(host=host, **dataclasses.asdict(self.ports))
        logger.info(
            "Vigil is up (%s): dashboard %s  OTLP gRPC %s  OTLP HTTP %s  StatsD %s  NetFlow/IPFIX %s  "
            "store %s (database %s), %d collector process(es)",
            ", ".join(sorted(roles)),
            f"http://{host}:{http_port}" if "api" in roles else f"off (probes on :{http_port})" if http_port else "off",
            f"{host}:{otlp_grpc}" if otlp_grpc else "off",
            f"http://{host}:{otlp_http}" if otlp_http else "off",
            f"{host}:{self.ports.statsd} (UDP, TCP)" if self.ports.statsd else "off",
            f"{host}:{self.ports.netflow},{self.ports.ipfix} (UDP)" if self.ports.netflow else "off",
            redacted_url(settings.clickhouse_url), database, len(self._processes.configs) if self._processes else 0,
        )  # fmt: skip
        await spares
        return self.ports

    async def _open_store(self, database: str) -> Client | None:
        """Open ClickHouse and migrate; None when a collector alone cannot reach a server yet.

        A collector needs no ClickHouse to accept data: its write-ahead log holds it, and its
        inserter connects (and migrates) once ClickHouse answers. Every other role needs it now.
        """
        try:
            client = open_client(self.settings.clickhouse_url)
        except StoreUnavailable as exc:
            if self.roles != frozenset({"collector"}):
                raise StoreUnavailable(
                    f"{exc}. Only a collector alone starts without ClickHouse (its write-ahead log keeps the "
                    "data); the api and detect roles need it now: start ClickHouse first, or let the supervisor "
                    "restart this process until it answers"
                ) from exc
            logger.warning("ClickHouse is unreachable (%s); accepting data into the write-ahead log meanwhile", exc)
            return None
        await asyncio.to_thread(migrate, client, ddl_context(self.settings, database))
        return client

    def _store_writer(self, client: Client | None, database: str) -> StoreWriter:
        if client is not None:
            return StoreWriter(client, database, local_files=self.settings.embedded)

        def connect() -> Client:
            connected = open_client(self.settings.clickhouse_url)
            migrate(connected, ddl_context(self.settings, database))
            return connected

        return ConnectingStoreWriter(connect, database)

    async def _start_detect(self, client: Client, database: str) -> None:
        settings = self.settings
        if self.roles == ROLES:
            # `vigil serve`: one process, no lease; VIGIL_DETECTORS_ENABLED=false leaves detection
            # to a separate `vigil detect`.
            if settings.detectors_enabled:
                await asyncio.to_thread(self._elected, client, database)
            return
        lease = Lease(client, database, DETECT_LEASE, ttl=settings.lease_ttl, cluster=bool(settings.clickhouse_cluster))
        self.leadership = Leadership(
            lease, on_elected=lambda: self._elected(client, database), on_deposed=self._deposed
        )
        self.leadership.start()

    def _elected(self, client: Client, database: str) -> None:
        # Fresh engines on each election: they restore the watermarks and models the previous
        # leader saved, rather than carry on from where this replica last stopped.
        self.detectors = DetectorEngine.from_settings(
            self.settings,
            client,
            database,
            metrics=self._detector_metrics,
            tracer=self.tracing.tracer("vigil.detectors"),
        )
        self.detectors.start()
        # Alerts follow findings, so they run where the detectors do.
        self.alerts = build_alert_loop(self.settings, client, database, self._alert_metrics)
        self.alerts.start()
        if self._detector_metrics is not None:
            self._detector_metrics.leader.set(1)

    def _deposed(self) -> None:
        if self._detector_metrics is not None:
            self._detector_metrics.leader.set(0)
        if self.alerts is not None:
            self.alerts.stop()
            self.alerts = None
        if self.detectors is not None:
            self.detectors.stop()
            self.detectors = None

    async def _start_collectors(self, auth: AuthConfig) -> tuple[int, int, int | None, tuple[int, int] | None]:
        """Bind the receivers' ports and start the collectors: (gRPC, HTTP, StatsD, NetFlow and IPFIX) ports."""
        settings = self.settings
        assert self.inserter is not None
        host = settings.bind
        # Fails the start now, naming the file, rather than in a collector process.
        ReloadingPrefixMap(settings.prefix_file or None)
        # Reserved (bound, not listening) so port 0 resolves once and collectors share the port.
        grpc_socket = _socket(host, settings.otlp_grpc_port, "VIGIL_OTLP_GRPC_PORT", listen=False, reuseport=True)
        http_socket = _socket(host, settings.otlp_http_port, "VIGIL_OTLP_HTTP_PORT", listen=False, reuseport=True)
        self._bound += [grpc_socket, http_socket]
        # Bound here, not probed and let go: the collector gets these very sockets, so no other
        # socket can take a port (0 included) between its choice and the collector's first read.
        statsd_pair = _statsd_sockets(host, settings.statsd_port) if settings.statsd_enabled else None
        try:
            flow_ports = {"VIGIL_NETFLOW_PORT": settings.netflow_port, "VIGIL_IPFIX_PORT": settings.ipfix_port}
            netflow = _flow_sockets(host, flow_ports) if settings.netflow_enabled else None
        except BaseException:
            UdpReceiverSockets(statsd_pair).close()
            raise
        udp_sockets = UdpReceiverSockets(statsd_pair, netflow)
        statsd_port = udp_sockets.statsd[0].getsockname()[1] if udp_sockets.statsd is not None else None
        netflow_ports = (
            tuple(sock.getsockname()[1] for sock in udp_sockets.netflow) if udp_sockets.netflow is not None else None
        )
        statsd = StatsdConfig(
            flush_interval=settings.statsd_flush_interval,
            percentiles=settings.statsd_percentile_values,
            service_segments=settings.statsd_service_segments,
            default_service=settings.statsd_default_service,
        )
        configs = [
            CollectorConfig(
                host=host,
                otlp_grpc_port=grpc_socket.getsockname()[1],
                otlp_http_port=http_socket.getsockname()[1],
                wal_root=settings.wal_path,
                wal_name=f"collector-{index}",
                wal_fsync=settings.wal_fsync,
                max_wal_bytes=settings.max_wal_bytes,
                max_batch_rows=settings.max_batch_rows,
                max_batch_age=settings.max_batch_age,
                max_queue_rows=settings.max_queue_rows,
                max_request_bytes=settings.max_request_bytes,
                max_grpc_message_bytes=settings.max_grpc_message_bytes,
                dedup=DedupConfig(settings.dedup_window, settings.dedup_max_requests),
                statsd_port=statsd_port if index == 0 else None,
                statsd=statsd,
                netflow_ports=netflow_ports if index == 0 else None,
                netflow=NetflowConfig(template_timeout_s=settings.netflow_template_timeout),
                prefix_file=settings.prefix_file,
                statsd_allowed_sources=settings.statsd_allowed_sources,
                netflow_allowed_sources=settings.netflow_allowed_sources,
                auth=auth,
            )
            for index in range(max(resolve_processes(settings.collector_processes), 1))
        ]
        if settings.collector_processes == 0:
            self._collector = Collector(configs[0], on_append=self.inserter.notify, sockets=udp_sockets)
            await self._collector.start()
        else:
            self._processes = CollectorProcesses(configs, settings.log_level, udp_sockets, settings.collector_nice)
            await asyncio.to_thread(self._processes.start)
        return configs[0].otlp_grpc_port, configs[0].otlp_http_port, statsd_port, netflow_ports

    def _wal_backlog(self) -> WalBacklog:
        return wal_backlog(Path(self.settings.wal_path), self.settings.max_wal_bytes)

    def _collector_snapshots(self) -> dict[str, CollectorSnapshot]:
        """Each collector's counts: read live in this process, or from the file a collector process leaves."""
        if self._collector is not None:
            return {self._collector.config.wal_name: self._collector.snapshot()}
        found: dict[str, CollectorSnapshot] = {}
        for config in self._processes.configs if self._processes is not None else []:
            snapshot = read_snapshot(snapshot_path(config.wal_root, config.wal_name))
            if snapshot is not None:
                found[config.wal_name] = snapshot
        return found

    def _start_sampler(self) -> None:
        """Vigil's own ingest lag and drops into the store, where detectors (here or in `vigil detect`) judge them."""
        if self.settings.self_metrics_interval <= 0 or self.inserter is None:
            return
        self.sampler = SelfSampler(
            self.inserter.writer,
            self._wal_backlog,
            self._collector_snapshots,
            interval=self.settings.self_metrics_interval,
            instance=socket.gethostname(),
        )
        self.sampler.start()

    def collectors_exited(self) -> list[str]:
        """Collector processes that stopped on their own (a crash): Vigil should stop too."""
        return self._processes.exited() if self._processes is not None else []

    async def shutdown(self) -> None:
        """Stop receiving and drain the collectors into their logs, stop detecting (handing the
        lease on), drain the logs into ClickHouse, then stop the web server. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.sampler is not None:
            await asyncio.to_thread(self.sampler.shutdown)
        # First, while the receivers still take spans a Vigil sends to itself; spans ended later are not sent.
        await asyncio.to_thread(self.tracing.shutdown)
        if self._collector is not None:
            await self._collector.shutdown()
        if self._processes is not None:
            await asyncio.to_thread(self._processes.shutdown)
        if self.request_exchange is not None:
            # After the collectors: their last requests' digests go out too.
            await asyncio.to_thread(self.request_exchange.shutdown)
        if self.leadership is not None:
            # Stops detectors and alerts if this replica leads, then hands the lease on.
            await asyncio.to_thread(self.leadership.stop)
        await asyncio.to_thread(self._deposed)
        if self.inserter is not None:
            await asyncio.to_thread(self.inserter.shutdown)
        if self._web is not None and self._web_task is not None:
            self._web.should_exit = True
            await asyncio.gather(self._web_task, return_exceptions=True)
        for sock in self._bound:
            sock.close()
        if self.ports is not None:
            logger.info("Vigil stopped")

    async def flush(self, timeout_s: float = 30.0) -> bool:
        """Insert every acknowledged row into ClickHouse now; False if that took over `timeout_s`."""
        if self.inserter is None:
            return True
        return await asyncio.to_thread(self.inserter.wait_idle, timeout_s)

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; raise if a collector process stops on its own."""
        while not stop.is_set():
            exited = self.collectors_exited()
            if exited:
                # Fail fast: a supervisor restarts Vigil; the logs keep what was acknowledged.
                raise RuntimeError(f"collector process stopped unexpectedly: {', '.join(exited)}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)

    async def run(self) -> None:
        """Start, serve until SIGINT or SIGTERM, then shut down cleanly."""
        stop = stop_on_signals()
        try:
            await self.start()
            await self.serve_until(stop)
        finally:
            await self.shutdown()


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (call from the running event loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
