"""Shared fixtures: one embedded ClickHouse per test session, one database per test.

chDB allows one data directory per process, so tests isolate by database name.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vigil.server import Ports, Vigil
from vigil.settings import Settings, load_settings
from vigil.store.client import Client, open_client


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture(scope="session")
def chdb_client(chdb_url: str) -> Client:
    return open_client(chdb_url)


@pytest.fixture
def database() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@dataclass
class RunningVigil:
    settings: Settings
    ports: Ports
    vigil: Vigil
    loop: asyncio.AbstractEventLoop

    def flush(self) -> None:
        """Wait until every acknowledged row is in ClickHouse (inserts are asynchronous)."""
        assert asyncio.run_coroutine_threadsafe(self.vigil.flush(), self.loop).result(timeout=60)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.ports.otlp_http}"

    @property
    def otlp_grpc(self) -> str:
        return f"127.0.0.1:{self.ports.otlp_grpc}"


def start_vigil(settings: Settings) -> tuple[RunningVigil, threading.Thread]:
    """Run a whole Vigil on a private event loop in a thread, on free ports."""
    loop = asyncio.new_event_loop()
    vigil = Vigil(settings)
    thread = threading.Thread(target=loop.run_forever, name="vigil-test-loop", daemon=True)
    thread.start()
    ports = asyncio.run_coroutine_threadsafe(vigil.start(), loop).result(timeout=60)
    return RunningVigil(settings, ports, vigil, loop), thread


def stop_vigil(running: RunningVigil, thread: threading.Thread) -> None:
    asyncio.run_coroutine_threadsafe(running.vigil.shutdown(), running.loop).result(timeout=60)
    running.loop.call_soon_threadsafe(running.loop.stop)
    thread.join(timeout=10)
    running.loop.close()


@pytest.fixture
def vigil_settings(chdb_url: str, database: str, tmp_path: Path) -> dict[str, Any]:
    """Overrides for a test's Vigil; a test may change them before asking for `vigil_server`."""
    return {
        "clickhouse_url": chdb_url,
        "clickhouse_database": database,
        "http_port": 0,
        "otlp_http_port": 0,
        "otlp_grpc_port": 0,
        "statsd_port": 0,
        "netflow_port": 0,
        "ipfix_port": 0,
        "statsd_flush_interval": "100ms",
        "collector_processes": 0,
        "max_batch_age": "5ms",
        "wal_dir": str(tmp_path / "wal"),
        "insert_interval": "20ms",
    }


@pytest.fixture
def vigil_server(vigil_settings: dict[str, Any]) -> Iterator[RunningVigil]:
    running, thread = start_vigil(load_settings(**vigil_settings))
    try:
        yield running
    finally:
        stop_vigil(running, thread)


@pytest.fixture
def quiet_vigil(vigil_settings: dict[str, Any]) -> Iterator[RunningVigil]:
    """A Vigil without its own detector and alert threads: tests drive them over past buckets."""
    running, thread = start_vigil(load_settings(**vigil_settings, detectors_enabled=False))
    try:
        yield running
    finally:
        stop_vigil(running, thread)


def vigil_with_prefixes(vigil_settings: dict[str, Any], directory: Path, prefixes: str) -> Iterator[RunningVigil]:
    """A Vigil whose VIGIL_PREFIX_FILE holds `prefixes` (CSV); for fixtures of flow tests."""
    prefix_file = directory / "prefixes.csv"
    prefix_file.write_text(prefixes)
    running, thread = start_vigil(load_settings(**vigil_settings, prefix_file=str(prefix_file)))
    try:
        yield running
    finally:
        stop_vigil(running, thread)
