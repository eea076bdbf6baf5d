"""`vigil serve`: every part in one process on one event loop.

This module is the composition root: it alone imports the parts (collector, api,
dashboards) to wire them; the import contracts in pyproject.toml exempt it and `vigil.cli`.

Start order follows the data flow backwards (store, writer, batcher, decode pool,
receivers, web), so nothing accepts data before its downstream is ready; shutdown runs
forwards, so receivers stop first and the batcher drains what they acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette

from vigil.api.app import create_app
from vigil.collector.batcher import Batcher, BatcherConfig
from vigil.collector.decode_pool import DecodePool, resolve_workers
from vigil.collector.ingest import OtlpIngest
from vigil.collector.otlp_grpc import OtlpGrpcReceiver
from vigil.collector.otlp_http import create_otlp_http_app
from vigil.collector.wal import WriteAheadLog
from vigil.collector.writer import Inserter, InserterConfig, WalWriter
from vigil.dashboards import views
from vigil.errors import ConfigError
from vigil.settings import Settings
from vigil.store.client import database_from_url, open_client
from vigil.store.migrate import migrate
from vigil.store.read import StoreReader
from vigil.store.schema import DdlContext
from vigil.store.write import StoreWriter

__all__ = ["Ports", "Vigil", "build_web_app"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ports:
    """The ports actually bound (settings may ask for 0: any free port)."""

    http: int
    otlp_http: int
    otlp_grpc: int


class _EmbeddedServer(uvicorn.Server):
    # Several servers share one loop; signals are handled once, by Vigil.run().
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_web_app(settings: Settings, reader: StoreReader) -> FastAPI:
    """The API plus the dashboard pages on one app (port VIGIL_HTTP_PORT)."""
    app = create_app(settings, reader)
    app.include_router(views.router)
    app.mount("/static", views.static_files(), name="static")
    return app


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; is another Vigil running?") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class Vigil:
    """The whole service in one process: collector, API and dashboards on the embedded or a remote store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ports: Ports | None = None
        self._servers: list[uvicorn.Server] = []
        self._server_tasks: list[asyncio.Task[None]] = []
        self._grpc: OtlpGrpcReceiver | None = None
        self._batcher: Batcher | None = None
        self.inserter: Inserter | None = None  # public: tests and drains wait on it
        self._decode_pool: DecodePool | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> Ports:
        settings = self.settings
        if not _is_loopback(settings.bind) and settings.auth != "off":
            raise ConfigError(
                f"VIGIL_BIND={settings.bind!r} is not a loopback address and no API tokens exist yet; "
                "set VIGIL_AUTH=off to serve without authentication on a trusted network"
            )
        database = database_from_url(settings.clickhouse_url, settings.clickhouse_database)
        client = open_client(settings.clickhouse_url)
        ctx = DdlContext(
            database=database,
            cluster=settings.clickhouse_cluster,
            traces_retention_days=settings.traces_retention_days,
            logs_retention_days=settings.logs_retention_days,
            metrics_retention_days=settings.metrics_retention_days,
        )
        await asyncio.to_thread(migrate, client, ctx)
        reader = StoreReader(client, database)

        wal = WriteAheadLog(Path(settings.wal_path), fsync=settings.wal_fsync)
        self.inserter = Inserter(
            StoreWriter(client, database, local_files=settings.embedded),
            wal,
            InserterConfig(settings.insert_rows, settings.insert_interval, settings.max_wal_bytes),
        )
        await asyncio.to_thread(self.inserter.start)
        self._batcher = Batcher(
            WalWriter(wal, self.inserter),
            BatcherConfig(settings.max_batch_rows, settings.max_batch_age, settings.max_queue_rows),
        )
        self._batcher.start()
        self._decode_pool = DecodePool(resolve_workers(settings.decode_workers), settings.max_request_bytes)
        await asyncio.to_thread(self._decode_pool.start)
        ingest = OtlpIngest(self._decode_pool, self._batcher)

        host = settings.bind
        self._grpc = OtlpGrpcReceiver(ingest, f"{host}:{settings.otlp_grpc_port}", settings.max_grpc_message_bytes)
        await self._grpc.start()
        otlp_socket = _bind(host, settings.otlp_http_port)
        web_socket = _bind(host, settings.http_port)
        self._serve(create_otlp_http_app(ingest, settings.max_request_bytes), otlp_socket)
        self._serve(build_web_app(settings, reader), web_socket)
        while not all(server.started for server in self._servers):
            if any(task.done() for task in self._server_tasks):
                raise RuntimeError("a web server failed to start; see the log above")
            await asyncio.sleep(0.01)
        self.ports = Ports(
            http=web_socket.getsockname()[1],
            otlp_http=otlp_socket.getsockname()[1],
            otlp_grpc=self._grpc.port,
        )
        logger.info(
            "Vigil is up: dashboard http://%s:%d  OTLP gRPC %s:%d  OTLP HTTP http://%s:%d  store %s (database %s)",
            host, self.ports.http, host, self.ports.otlp_grpc, host, self.ports.otlp_http,
            settings.clickhouse_url, database,
        )  # fmt: skip
        return self.ports

    def _serve(self, app: Starlette, sock: socket.socket) -> None:
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=75)
        server = _EmbeddedServer(config)
        self._servers.append(server)
        self._server_tasks.append(asyncio.create_task(server.serve(sockets=[sock])))

    async def shutdown(self) -> None:
        """Stop receiving, drain the queue into the store, then stop the web servers. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._grpc is not None:
            await self._grpc.shutdown()
        for server in self._servers:
            server.should_exit = True
        await asyncio.gather(*self._server_tasks, return_exceptions=True)
        if self._batcher is not None:
            await asyncio.to_thread(self._batcher.shutdown)
        if self.inserter is not None:
            await asyncio.to_thread(self.inserter.shutdown)
        if self._decode_pool is not None:
            await asyncio.to_thread(self._decode_pool.shutdown)
        if self.ports is not None:
            logger.info("Vigil stopped")

    async def flush(self, timeout_s: float = 30.0) -> bool:
        """Insert every acknowledged row into ClickHouse now; False if that took over `timeout_s`."""
        if self.inserter is None:
            return True
        return await asyncio.to_thread(self.inserter.wait_idle, timeout_s)

    async def run(self) -> None:
        """Start, serve until SIGINT or SIGTERM, then shut down cleanly."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
            await stop.wait()
        finally:
            await self.shutdown()
