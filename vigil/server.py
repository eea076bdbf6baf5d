"""`vigil serve` (every part in one process on one event loop) and the roles it splits into.

This module is the composition root: it alone imports the parts (collector, api,
dashboards) to wire them; the import contracts in pyproject.toml exempt it and `vigil.cli`.

`Vigil` runs a set of roles; `vigil serve` runs all three, each role command one:

- **collector**: receivers (OTLP receivers, decoding, batching, each with its own log) in
  child processes sharing the OTLP ports, or in this process with `VIGIL_COLLECTOR_PROCESSES=0`;
  the inserter that moves write-ahead log segments into ClickHouse; and /healthz and /readyz on
  VIGIL_HTTP_PORT for probes. Against a ClickHouse server, collectors scale out behind a load
  balancer, each with its own log.
- **api**: the API and pages.
- **detect**: detectors, and the alerts that follow their findings, with /healthz and /readyz
  on VIGIL_HTTP_PORT. Split from the others it runs them only while it holds the `detect`
  leader lease (vigil.store.lease), so replicas can stand by; in `vigil serve` the process is
  alone and needs no lease.

Every role migrates (idempotently), so any one may start first.

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
from fastapi import FastAPI

from vigil.alerts.engine import AlertLoop, build_alert_loop
from vigil.alerts.rules import load_rules_file
from vigil.api.app import create_app
from vigil.api.routers import health
from vigil.collector.collector import Collector, CollectorConfig, EmbeddedServer, bind_tcp
from vigil.collector.decode.netflow import NetflowConfig
from vigil.collector.enrich import ReloadingPrefixMap
from vigil.collector.process import CollectorProcesses
from vigil.collector.statsd_aggregate import StatsdConfig
from vigil.collector.writer import Inserter, InserterConfig
from vigil.dashboards import site
from vigil.dashboards.render import Receivers
from vigil.detectors.engine import DetectorEngine
from vigil.errors import ConfigError
from vigil.settings import Settings
from vigil.store.alerts import AlertStore
from vigil.store.client import Client, database_from_url, open_client
from vigil.store.lease import Leadership, Lease
from vigil.store.migrate import ddl_context, migrate
from vigil.store.read import StoreReader
from vigil.store.slos import SloStore, load_slo_file
from vigil.store.write import StoreWriter

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


def build_web_app(settings: Settings, reader: StoreReader) -> FastAPI:
    """The API plus the dashboard pages on one app (port VIGIL_HTTP_PORT)."""
    app = create_app(settings, reader)
    site.install(app)
    return app


def build_health_app(reader: StoreReader) -> FastAPI:
    """Only /healthz and /readyz: what a collector or detector serves on VIGIL_HTTP_PORT for its probes."""
    app = FastAPI(title="Vigil probes", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.reader = reader
    app.include_router(health.router)
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


def _statsd_port(host: str, port: int) -> int:
    """A StatsD port free on both UDP and TCP (port 0 resolves to one), checked before collectors start."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(20):  # port 0: the free UDP port may be taken on TCP; try another
        with socket.socket(family, socket.SOCK_DGRAM) as udp, socket.socket(family, socket.SOCK_STREAM) as tcp:
            try:
                udp.bind((host, port))
                tcp.bind((host, udp.getsockname()[1]))
            except OSError as exc:
                if port == 0:
                    continue
                raise ConfigError(
                    f"VIGIL_STATSD_PORT: cannot listen on {host}:{port} ({exc.strerror}); if another StatsD "
                    "daemon owns it, choose another port or set VIGIL_STATSD_ENABLED=false"
                ) from None
            return int(udp.getsockname()[1])
    raise ConfigError(f"VIGIL_STATSD_PORT: no port free on both UDP and TCP at {host}")


def _udp_port(host: str, port: int, variable: str) -> int:
    """`port` if free on UDP, or for 0 a free one, checked before collectors start."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as udp:
        try:
            udp.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"{variable}: cannot listen on UDP {host}:{port} ({exc.strerror}); if another flow collector "
                "owns it, choose another port or set VIGIL_NETFLOW_ENABLED=false"
            ) from None
        return int(udp.getsockname()[1])


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
        self._web: EmbeddedServer | None = None
        self._web_task: asyncio.Task[None] | None = None
        self._collector: Collector | None = None
        self.detectors: DetectorEngine | None = None
        self.alerts: AlertLoop | None = None
        self.leadership: Leadership | None = None  # the detect role apart from `vigil serve`
        self._processes: CollectorProcesses | None = None
        self._reserved: list[socket.socket] = []
        self._stopped = asyncio.Event()

    async def start(self) -> Ports:
        settings = self.settings
        roles = self.roles
        if "api" in roles and not _is_loopback(settings.bind) and settings.auth != "off":
            raise ConfigError(
                f"VIGIL_BIND={settings.bind!r} is not a loopback address and no API tokens exist yet; "
                "set VIGIL_AUTH=off to serve without authentication on a trusted network"
            )
        database = database_from_url(settings.clickhouse_url, settings.clickhouse_database)
        client = open_client(settings.clickhouse_url)
        await asyncio.to_thread(migrate, client, ddl_context(settings, database))
        if roles & {"api", "detect"}:
            # SLOs and alert rules are read by pages and detectors; collectors never look at them.
            if settings.slo_file:
                # Checked before anything listens: a broken SLO file stops start-up with its line.
                await asyncio.to_thread(SloStore(client, database).sync_file, load_slo_file(settings.slo_file))
            if settings.alert_rules_file:
                rules = load_rules_file(settings.alert_rules_file)
                document = {"rules": [rule.to_dict() for rule in rules]}
                await asyncio.to_thread(AlertStore(client, database).put_rules, document, "file")
        reader = StoreReader(client, database)

        if "collector" in roles:
            self.inserter = Inserter(
                StoreWriter(client, database, local_files=settings.embedded),
                Path(settings.wal_path),
                InserterConfig(settings.insert_rows, settings.insert_interval),
                fsync=settings.wal_fsync,
            )
            await asyncio.to_thread(self.inserter.start)
        if "detect" in roles:
            await self._start_detect(client, database)

        host = settings.bind
        http_port = otlp_http = otlp_grpc = 0
        statsd_port: int | None = None
        netflow_ports: tuple[int, int] | None = None
        if roles:  # every role answers probes; only api serves the API and pages
            # Not shared: a second server on the web port is a mistake to report, not to balance.
            web_socket = _socket(host, settings.http_port, "VIGIL_HTTP_PORT", listen=True, reuseport=False)
            http_port = web_socket.getsockname()[1]
        if "collector" in roles:
            otlp_grpc, otlp_http, statsd_port, netflow_ports = await self._start_collectors()
        web_app: FastAPI | None = None
        if roles:
            # A collector or detector alone serves its probes only; the API and pages are the api role's.
            web_app = build_web_app(settings, reader) if "api" in roles else build_health_app(reader)
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
            settings.clickhouse_url, database, len(self._processes.configs) if self._processes else 0,
        )  # fmt: skip
        return self.ports

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
        self.detectors = DetectorEngine.from_settings(self.settings, client, database)
        self.detectors.start()
        # Alerts follow findings, so they run where the detectors do.
        self.alerts = build_alert_loop(self.settings, client, database)
        self.alerts.start()

    def _deposed(self) -> None:
        if self.alerts is not None:
            self.alerts.stop()
            self.alerts = None
        if self.detectors is not None:
            self.detectors.stop()
            self.detectors = None

    async def _start_collectors(self) -> tuple[int, int, int | None, tuple[int, int] | None]:
        """Bind the receivers' ports and start the collectors: (gRPC, HTTP, StatsD, NetFlow and IPFIX) ports."""
        settings = self.settings
        assert self.inserter is not None
        host = settings.bind
        # Reserved (bound, not listening) so port 0 resolves once and collectors share the port.
        grpc_socket = _socket(host, settings.otlp_grpc_port, "VIGIL_OTLP_GRPC_PORT", listen=False, reuseport=True)
        http_socket = _socket(host, settings.otlp_http_port, "VIGIL_OTLP_HTTP_PORT", listen=False, reuseport=True)
        self._reserved = [grpc_socket, http_socket]
        statsd_port = _statsd_port(host, settings.statsd_port) if settings.statsd_enabled else None
        netflow_ports = (
            (
                _udp_port(host, settings.netflow_port, "VIGIL_NETFLOW_PORT"),
                _udp_port(host, settings.ipfix_port, "VIGIL_IPFIX_PORT"),
            )
            if settings.netflow_enabled
            else None
        )
        # Fails the start now, naming the file, rather than in a collector process.
        ReloadingPrefixMap(settings.prefix_file or None)
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
                statsd_port=statsd_port if index == 0 else None,
                statsd=statsd,
                netflow_ports=netflow_ports if index == 0 else None,
                netflow=NetflowConfig(template_timeout_s=settings.netflow_template_timeout),
                prefix_file=settings.prefix_file,
                statsd_allowed_sources=settings.statsd_allowed_sources,
                netflow_allowed_sources=settings.netflow_allowed_sources,
            )
            for index in range(max(resolve_processes(settings.collector_processes), 1))
        ]
        if settings.collector_processes == 0:
            self._collector = Collector(configs[0], on_append=self.inserter.notify)
            await self._collector.start()
        else:
            self._processes = CollectorProcesses(configs, settings.log_level)
            await asyncio.to_thread(self._processes.start)
        return configs[0].otlp_grpc_port, configs[0].otlp_http_port, statsd_port, netflow_ports

    def collectors_exited(self) -> list[str]:
        """Collector processes that stopped on their own (a crash): Vigil should stop too."""
        return self._processes.exited() if self._processes is not None else []

    async def shutdown(self) -> None:
        """Stop receiving and drain the collectors into their logs, stop detecting (handing the
        lease on), drain the logs into ClickHouse, then stop the web server. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._collector is not None:
            await self._collector.shutdown()
        if self._processes is not None:
            await asyncio.to_thread(self._processes.shutdown)
        if self.leadership is not None:
            # Stops detectors and alerts if this replica leads, then hands the lease on.
            await asyncio.to_thread(self.leadership.stop)
        await asyncio.to_thread(self._deposed)
        if self.inserter is not None:
            await asyncio.to_thread(self.inserter.shutdown)
        if self._web is not None and self._web_task is not None:
            self._web.should_exit = True
            await asyncio.gather(self._web_task, return_exceptions=True)
        for sock in self._reserved:
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
